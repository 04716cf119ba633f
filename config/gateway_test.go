package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sendid/sendid/config"
)

func TestGatewayDefaultsAndEnv(t *testing.T) {
	t.Parallel()
	c, err := config.Parse(nil, env(map[string]string{"SENDID_GATEWAY_ADDR": "127.0.0.1:8081"}))
	if err != nil {
		t.Fatal(err)
	}
	g := c.Gateway
	if g.Addr != "127.0.0.1:8081" || g.Wait != 10*time.Second || g.MaxWaiting != 1000 || g.ReadHeaderTimeout <= 0 || g.WriteTimeout <= config.MaxGatewayWait {
		t.Fatalf("gateway settings %+v", g)
	}
	if c.Dev.GatewayTLSAddr != config.DevGatewayTLSAddr {
		t.Fatalf("dev.gateway_tls_addr %q", c.Dev.GatewayTLSAddr)
	}
	if off, _ := config.Parse(nil, env(nil)); off.Gateway.Addr != "" {
		t.Fatal("the gateway is off unless its address is set")
	}
}

func TestGatewayValidate(t *testing.T) {
	t.Parallel()
	yaml := `
braze: {url: "https://rest.iad-01.braze.com"}
gateway:
  addr: "no-port"
  tls: {cert_file: /c.pem}
  wait: 2m
  max_waiting: 0
reply_subjects: ["app.results.>"]
app_groups:
  default:
    gateway_tokens_env: A
    gateway_tokens_file: /b
`
	c, err := config.Parse([]byte(yaml), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate(false)
	if err == nil {
		t.Fatal("no problems found")
	}
	for _, key := range []string{"gateway.addr", "gateway.tls", "gateway.wait", "gateway.max_waiting", "reply_subjects", "app_groups.default: gateway_tokens_env"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("no problem names %s:\n%v", key, err)
		}
	}
	c.ReplySubjects = []string{"app.>", "_INBOX.>"}
	c.Gateway.Addr, c.Gateway.TLS.CertFile, c.Gateway.Wait, c.Gateway.MaxWaiting = ":8081", "", time.Second, 5
	g := c.AppGroups["default"]
	g.GatewayTokensFile = ""
	c.AppGroups["default"] = g
	if err := c.Validate(false); err != nil {
		t.Fatalf("fixed configuration: %v", err)
	}
}

func TestLoadGatewayTokens(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte("# producers of the eu team\n tok-1 \n\ntok-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := "app_groups:\n  default:\n    gateway_tokens_env: TOKENS\n  eu:\n    gateway_tokens_file: " + file + "\n"
	c, err := config.Parse([]byte(yaml), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.LoadGatewayTokens(env(map[string]string{"TOKENS": "a-1, a-2\nA-3"}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(reveal(got["default"]), ",") != "a-1,a-2,A-3" || strings.Join(reveal(got["eu"]), ",") != "tok-1,tok-2" {
		t.Fatalf("tokens %v %v", reveal(got["default"]), reveal(got["eu"]))
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LoadGatewayTokens(env(nil)); err == nil || !strings.Contains(err.Error(), "app_groups.eu.gateway_tokens_file") {
		t.Fatalf("missing file: %v", err)
	}
}

func reveal(s []config.Secret) []string {
	var out []string
	for _, x := range s {
		out = append(out, x.Reveal())
	}
	return out
}
