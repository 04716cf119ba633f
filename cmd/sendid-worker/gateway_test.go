package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/config"
	"github.com/sendid/sendid/internal/natstest"
)

// gatewayPost sends Braze's request to base and returns status and body.
func gatewayPost(t *testing.T, client *http.Client, base, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/sends/id/create", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// -dev serves the gateway on plain HTTP and on HTTPS with a self-signed
// certificate kept in the dev folder, and its banner prints a curl command.
func TestGatewayDev(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	httpGW, httpsGW := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t)), fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	cfgFile := filepath.Join(dir, "sendid.yaml")
	yaml := fmt.Sprintf("gateway:\n  addr: %s\ndev:\n  data_dir: %s\n  gateway_tls_addr: %s\n", httpGW, filepath.Join(dir, "data"), httpsGW)
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SENDID_CONFIG": cfgFile, "SENDID_NATS_URL": fmt.Sprintf("nats://127.0.0.1:%d", natstest.FreePort(t)),
		"SENDID_HTTP_ADDR": fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t)), "SENDID_LOG_LEVEL": "warn"}
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-dev"}, envMap(env), nil, &out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	waitFor(t, "the banner", 30*time.Second, func() bool { return strings.Contains(out.String(), "/sends/id/create") })
	banner := out.String()
	for _, s := range []string{"http://" + httpGW, "https://" + httpsGW, "Bearer dev-key", `"campaign_id": "campaign_identifier"`} {
		if !strings.Contains(banner, s) {
			t.Fatalf("banner lacks %q:\n%s", s, banner)
		}
	}
	insecure := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	body := `{"campaign_id": "campaign_identifier", "send_id": "send_identifier"}`
	for _, base := range []string{"https://" + httpsGW, "http://" + httpGW} {
		if code, b := gatewayPost(t, insecure, base, "dev-key", body); code != 201 || b != `{"message":"success","send_id":"send_identifier"}` {
			t.Fatalf("%s: %d %s", base, code, b)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "gateway-tls", "cert.pem")); err != nil {
		t.Fatalf("self-signed certificate not in the dev folder: %v", err)
	}
}

// A rotated key stops working at the gateway once the daemon has reloaded
// it; a gateway token from a file works for its group.
func TestGatewayKeyRotation(t *testing.T) {
	t.Parallel()
	const oldKey, newKey, token = "sk-OLD-1", "sk-NEW-2", "gw-token-3"
	ns := natstest.Start(t)
	sim := brazetest.NewServer(brazetest.Options{})
	t.Cleanup(sim.Close)
	dir := t.TempDir()
	keyFile, tokensFile, cfgFile := filepath.Join(dir, "key"), filepath.Join(dir, "tokens"), filepath.Join(dir, "sendid.yaml")
	for f, v := range map[string]string{keyFile: oldKey, tokensFile: "# producers\n" + token + "\n",
		cfgFile: "app_groups:\n  default:\n    gateway_tokens_file: " + tokensFile + "\n"} {
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	gw := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	startDaemon(t, map[string]string{"SENDID_NATS_URL": ns.URL(), "SENDID_BRAZE_URL": sim.URL, "SENDID_BRAZE_API_KEY_FILE": keyFile,
		"SENDID_CONFIG": cfgFile, "SENDID_GATEWAY_ADDR": gw})
	base := "http://" + gw
	waitFor(t, "the gateway", 20*time.Second, func() bool {
		code, _ := gatewayPost(t, http.DefaultClient, base, oldKey, `{"campaign_id":"c","send_id":"s1"}`)
		return code == 201
	})
	if code, b := gatewayPost(t, http.DefaultClient, base, token, `{"campaign_id":"c","send_id":"s2"}`); code != 201 {
		t.Fatalf("gateway token: %d %s", code, b)
	}
	if err := os.WriteFile(keyFile, []byte(newKey), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the old key refused", 20*time.Second, func() bool {
		code, _ := gatewayPost(t, http.DefaultClient, base, oldKey, `{"campaign_id":"c","send_id":"s3"}`)
		return code == 401
	})
	if code, b := gatewayPost(t, http.DefaultClient, base, newKey, `{"campaign_id":"c","send_id":"s4"}`); code != 201 {
		t.Fatalf("new key: %d %s", code, b)
	}
}

func TestGatewayCheckConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	shared := filepath.Join(dir, "shared.yaml")
	yaml := "braze:\n  url: https://rest.iad-01.braze.com\napp_groups:\n  a:\n    api_key_env: KEY_A\n    gateway_tokens_env: TOKENS\n  b:\n    api_key_env: KEY_B\n    gateway_tokens_env: TOKENS\n"
	if err := os.WriteFile(shared, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")
	yaml = "braze:\n  url: https://rest.iad-01.braze.com\napp_groups:\n  a:\n    api_key_env: KEY_A\n    gateway_tokens_file: " + filepath.Join(dir, "nope") + "\n"
	if err := os.WriteFile(missing, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	badTLS := filepath.Join(dir, "tls.yaml")
	yaml = "braze:\n  url: https://rest.iad-01.braze.com\napp_groups:\n  a:\n    api_key_env: KEY_A\ngateway:\n  tls: {cert_file: " + shared + ", key_file: " + shared + "}\n"
	if err := os.WriteFile(badTLS, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		file, want string
	}{
		"token shared by two groups": {shared, "app groups a and b share"},
		"tokens file missing":        {missing, "gateway_tokens_file"},
		"certificate not PEM":        {badTLS, "gateway.tls.cert_file"},
	} {
		var out strings.Builder
		err := run(context.Background(), []string{"-check-config"}, envMap(map[string]string{"SENDID_CONFIG": c.file,
			"KEY_A": "ka", "KEY_B": "kb", "TOKENS": "tok-1", "SENDID_GATEWAY_ADDR": "127.0.0.1:0"}), nil, &out)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "tok-1") {
			t.Errorf("%s: %v (exit %d)", name, err, exitCode(err))
		}
	}
}

// The banner shows the -dev placeholder key, never a real one.
func TestGatewayBannerHidesRealKeys(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	gatewayBanner(&out, []string{"http://127.0.0.1:1"}, map[string]config.Secret{"default": "sk-REAL-123"})
	if strings.Contains(out.String(), "sk-REAL-123") || !strings.Contains(out.String(), "Bearer <API key of app group default>") {
		t.Fatalf("banner with a real key:\n%s", out.String())
	}
	out.Reset()
	gatewayBanner(&out, []string{"http://127.0.0.1:1"}, map[string]config.Secret{"default": config.DevKey})
	if !strings.Contains(out.String(), "Bearer dev-key") {
		t.Fatalf("banner with the -dev key:\n%s", out.String())
	}
}
