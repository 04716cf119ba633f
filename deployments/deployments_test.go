package deployments_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/sendid/sendid/config"
	"github.com/sendid/sendid/internal/ops"
)

// docs decodes every YAML document of a file.
func docs(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var out []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			out = append(out, d)
		}
	}
}

// get walks a decoded YAML tree: keys for maps, ints for lists.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string { s, _ := v.(string); return s }

func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return p
}

func files(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, ".md") {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Every SENDID_* name in any deployment file is one the binary reads.
func TestEnvNames(t *testing.T) {
	re := regexp.MustCompile(`SENDID_[A-Z_]+`)
	for _, f := range files(t) {
		b, _ := os.ReadFile(f)
		for _, name := range re.FindAllString(string(b), -1) {
			if !slices.Contains(config.EnvNames, name) {
				t.Errorf("%s: %s is not an environment variable sendid-worker reads", f, name)
			}
		}
	}
}

// Every YAML file parses; every embedded sendid config parses strictly and
// validates.
func TestConfigs(t *testing.T) {
	for _, f := range files(t) {
		if (strings.HasSuffix(f, ".yaml") || strings.HasSuffix(f, ".yml")) && !isTemplate(f) {
			docs(t, f)
		}
	}
	check := func(name string, data []byte) {
		c, err := config.Parse(data, func(string) string { return "" })
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := c.Validate(false); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	b, err := os.ReadFile("sendid.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	check("sendid.example.yaml", b)
	b, err = os.ReadFile("kubernetes/base/sendid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	check("kubernetes/base/sendid.yaml", b)
}

// The operations paths the manifests name are served by the binary's handler.
func TestOpsPathsServed(t *testing.T) {
	srv := httptest.NewServer(ops.Handler(prometheus.NewRegistry(), zap.NewAtomicLevel(), func() error { return nil }, false))
	defer srv.Close()
	for _, p := range []string{ops.HealthPath, ops.ReadyPath, ops.MetricsPath, ops.LogLevelPath} {
		resp, err := http.Get(srv.URL + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p, err, resp)
		}
		resp.Body.Close()
	}
}

func TestCompose(t *testing.T) {
	d := docs(t, "docker-compose.yaml")[0]
	services := get(d, "services").(map[string]any)
	simArgs := get(services, "brazesim", "entrypoint").([]any)
	simAddr := ""
	for i, a := range simArgs {
		if a == "-addr" {
			simAddr = str(simArgs[i+1])
		}
	}
	published := map[string]bool{}
	for _, p := range get(services, "brazesim", "ports").([]any) {
		published[str(p)[strings.LastIndex(str(p), ":")+1:]] = true
	}
	workers := 0
	for name, s := range services {
		env, _ := get(s, "environment").(map[string]any)
		if env == nil {
			continue
		}
		workers++
		if u := str(env["SENDID_BRAZE_URL"]); !strings.HasSuffix(u, ":"+port(t, simAddr)) {
			t.Errorf("%s: SENDID_BRAZE_URL %s does not reach brazesim at %s", name, u, simAddr)
		}
		if p := port(t, str(env["SENDID_HTTP_ADDR"])); !published[p] {
			t.Errorf("%s: HTTP port %s is not published", name, p)
		}
	}
	if workers != 2 {
		t.Errorf("%d worker services, want 2", workers)
	}
	// One build (shared by every sendid service), the NATS version the code
	// pins, healthchecks on /readyz and a grace period above the shutdown
	// timeout.
	builds := 0
	for name, svc := range services {
		if get(svc, "build") != nil {
			builds++
		}
		env, _ := get(svc, "environment").(map[string]any)
		if env == nil {
			continue
		}
		hc := strings.Join(strs(get(svc, "healthcheck", "test")), " ")
		if !strings.HasSuffix(hc, ":"+port(t, str(env["SENDID_HTTP_ADDR"]))+ops.ReadyPath) {
			t.Errorf("%s: healthcheck %q does not ask /readyz on its HTTP port", name, hc)
		}
		if d, err := time.ParseDuration(str(get(svc, "stop_grace_period"))); err != nil || d <= config.Default().Shutdown {
			t.Errorf("%s: stop_grace_period %v must exceed the shutdown timeout %s", name, get(svc, "stop_grace_period"), config.Default().Shutdown)
		}
	}
	if builds != 1 {
		t.Errorf("%d services build the image, want 1", builds)
	}
	natsImage := str(get(services, "nats", "image"))
	if want := "nats:" + natsServerMinor(t); !strings.HasPrefix(natsImage, want) {
		t.Errorf("nats image %s, want %s (the nats-server version go.mod pins)", natsImage, want)
	}
}

func TestSystemdUnit(t *testing.T) {
	f, err := os.Open("systemd/sendid-worker.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kv := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("not key=value: %q", line)
		}
		kv[k] = append(kv[k], v)
	}
	for _, e := range kv["Environment"] {
		if strings.HasPrefix(e, "SENDID_") {
			t.Errorf("Environment=%s would silently override the config file", e)
		}
	}
	exec := strings.Fields(kv["ExecStart"][0])
	if exec[0] != "/usr/local/bin/sendid-worker" || len(exec) != 3 || exec[1] != "-config" || !filepath.IsAbs(exec[2]) {
		t.Errorf("ExecStart %v, want sendid-worker -config <file>", exec)
	}
	if r := kv["RestartPreventExitStatus"]; len(r) != 1 || r[0] != "2" {
		t.Errorf("RestartPreventExitStatus %v, want 2 (a bad configuration must not restart in a loop)", r)
	}
	// The user exists: sysusers.d creates it (or systemd does, DynamicUser).
	sysusers, err := os.ReadFile("systemd/sendid.sysusers")
	if err != nil {
		t.Fatal(err)
	}
	created := map[string]bool{}
	for _, line := range strings.Split(string(sysusers), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "u" {
			created[f[1]] = true
		}
	}
	if u := kv["User"]; len(u) != 1 || !created[u[0]] && kv["DynamicUser"] == nil {
		t.Errorf("User %v is not created by systemd/sendid.sysusers", u)
	}
	if u := kv["User"]; len(u) != 1 || u[0] == "root" || u[0] == "" {
		t.Errorf("User %v", u)
	}
	for _, k := range []string{"NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes"} {
		key, want, _ := strings.Cut(k, "=")
		if got := kv[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %v, want %s", key, got, want)
		}
	}
	if r := kv["ExecReload"]; len(r) != 1 || !strings.Contains(r[0], "-HUP") {
		t.Errorf("ExecReload %v should send SIGHUP", r)
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if !strings.Contains(s, "EXPOSE "+port(t, config.Default().HTTPAddr)) {
		t.Error("EXPOSE does not match the default HTTP port")
	}
	if !regexp.MustCompile(`(?m)^USER 65532`).MatchString(s) || !strings.Contains(s, "CGO_ENABLED=0") {
		t.Error("the image must be static and run as a non-root user")
	}
	// Every base image is pinned by digest; the default (last) stage, the
	// production image, carries no simulator; the Go image can build go.mod.
	froms := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(s, -1)
	for _, f := range froms {
		if !regexp.MustCompile(`@sha256:[0-9a-f]{64}$`).MatchString(f[1]) {
			t.Errorf("FROM %s is not pinned by digest", f[1])
		}
	}
	stages := strings.Split(s, "\nFROM ")
	if last := stages[len(stages)-1]; !strings.Contains(last, "AS production") || strings.Contains(last, "brazesim") || strings.Contains(last, "/out/dev") {
		t.Error("the last stage (the default target) must be the production image, without brazesim")
	}
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+(?:\.\d+)?)`).FindStringSubmatch(string(gomod))
	goTag := regexp.MustCompile(`^golang:(\d+\.\d+(?:\.\d+)?)`).FindStringSubmatch(froms[0][1])
	if goLine == nil || goTag == nil || versionLess(goTag[1], goLine[1]) {
		t.Errorf("build image %s cannot build go.mod's go %v", froms[0][1], goLine)
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker not installed: image build skipped")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := exec.CommandContext(ctx, "docker", "info").Run(); err != nil {
		t.Skip("no Docker engine reachable (docker info failed): image build skipped")
	}
	bctx, bcancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer bcancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(bctx, "docker", "build", "-f", "deployments/Dockerfile", "-t", "sendid:test", ".")
	cmd.Dir = ".."
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out.String())
	}
}

func strs(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		out = append(out, str(x))
	}
	return out
}

// natsServerMinor is the major.minor of the nats-server module go.mod pins.
func natsServerMinor(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`nats-server/v2 v(\d+\.\d+)\.`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatal("go.mod pins no nats-server")
	}
	return m[1]
}

// versionLess compares dotted version numbers.
func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(pa), len(pb)) {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a port: %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}
