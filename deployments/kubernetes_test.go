package deployments_test

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/sendid/sendid/config"
	"github.com/sendid/sendid/internal/ops"
)

// isTemplate reports whether a file is a Helm template (not plain YAML; it
// is checked through `helm template`).
func isTemplate(path string) bool {
	return strings.HasPrefix(filepath.ToSlash(path), "helm/sendid/templates/")
}

// manifests are the objects of one rendering, by kind.
type manifests struct {
	name string
	objs []map[string]any
}

func (m manifests) all(kind string) []map[string]any {
	var out []map[string]any
	for _, o := range m.objs {
		if o["kind"] == kind {
			out = append(out, o)
		}
	}
	return out
}

func (m manifests) one(t *testing.T, kind string) map[string]any {
	t.Helper()
	l := m.all(kind)
	if len(l) != 1 {
		t.Fatalf("%s: %d %s objects, want 1", m.name, len(l), kind)
	}
	return l[0]
}

func (m manifests) named(kind, name string) map[string]any {
	for _, o := range m.all(kind) {
		if str(get(o, "metadata", "name")) == name {
			return o
		}
	}
	return nil
}

func parseManifests(t *testing.T, name string, data []byte) manifests {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	m := manifests{name: name}
	for {
		var d map[string]any
		if err := dec.Decode(&d); err != nil {
			if errors.Is(err, io.EOF) {
				return m
			}
			t.Fatalf("%s: %v", name, err)
		}
		if d != nil {
			m.objs = append(m.objs, d)
		}
	}
}

// kustomize renders a kustomization as `kubectl apply -k` would.
func kustomize(t *testing.T, dir string) manifests {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	b, err := rm.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	return parseManifests(t, dir, b)
}

// builtinGroups are the API groups every cluster serves: core, apps,
// policy, networking.
var builtinGroups = map[string]bool{"": true, "apps": true, "policy": true, "networking.k8s.io": true}

func apiGroup(o map[string]any) string {
	g, _, ok := strings.Cut(str(o["apiVersion"]), "/")
	if !ok {
		return ""
	}
	return g
}

// matches reports whether selector labels all appear in labels.
func matches(selector, labels any) bool {
	sel, _ := selector.(map[string]any)
	lab, _ := labels.(map[string]any)
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if lab[k] != v {
			return false
		}
	}
	return true
}

// want says what a rendering must contain beyond the common checks.
type want struct {
	builtinOnly bool // no CRDs: only core/apps/policy/networking kinds (so no Secret, no ServiceMonitor)
	secrets     bool // the Secrets the pod mounts are part of the rendering
	monitoring  bool // ServiceMonitor and PrometheusRule
	natsTLS     bool // NATS over TLS with a creds file
	network     bool // a NetworkPolicy
}

// checkManifests checks one rendering against the binary: probes, ports,
// the config file it mounts, key files, selectors, PDB, spread, memory
// limit, and the optional parts.
func checkManifests(t *testing.T, m manifests, w want) {
	t.Helper()
	t.Run(m.name, func(t *testing.T) {
		for _, o := range m.objs {
			if w.builtinOnly && !builtinGroups[apiGroup(o)] {
				t.Errorf("%s %s needs a CRD (API group %q)", o["kind"], get(o, "metadata", "name"), apiGroup(o))
			}
			if w.builtinOnly && o["kind"] == "Secret" {
				t.Errorf("Secret %s: keys must not be part of this rendering", get(o, "metadata", "name"))
			}
		}
		dep := m.one(t, "Deployment")
		if r, ok := get(dep, "spec", "replicas").(int); !ok || r < 2 {
			t.Errorf("replicas %v, want at least 2", get(dep, "spec", "replicas"))
		}
		tmpl := get(dep, "spec", "template")
		podLabels := get(tmpl, "metadata", "labels")
		if !matches(get(dep, "spec", "selector", "matchLabels"), podLabels) {
			t.Error("the Deployment's selector does not match its pods")
		}
		pod := get(tmpl, "spec")
		c := get(pod, "containers", 0)

		// Config: -config names the mounted ConfigMap's sendid.yaml.
		mounts := map[string]string{}
		for _, vm := range get(c, "volumeMounts").([]any) {
			mounts[str(get(vm, "name"))] = str(get(vm, "mountPath"))
		}
		volumes := map[string]any{}
		for _, v := range get(pod, "volumes").([]any) {
			volumes[str(get(v, "name"))] = v
		}
		args := get(c, "args").([]any)
		if len(args) != 2 || args[0] != "-config" {
			t.Fatalf("args %v, want -config <file>", args)
		}
		cfgDir, cfgKey := filepath.Split(str(args[1]))
		var cfgVol string
		for name, dir := range mounts {
			if filepath.Clean(dir) == filepath.Clean(cfgDir) {
				cfgVol = name
			}
		}
		cm := m.named("ConfigMap", str(get(volumes[cfgVol], "configMap", "name")))
		if cm == nil {
			t.Fatalf("-config %s is not in a mounted ConfigMap of the rendering", args[1])
		}
		cfg, err := config.Parse([]byte(str(get(cm, "data", cfgKey))), func(string) string { return "" })
		if err != nil {
			t.Fatalf("ConfigMap %s: %v", get(cm, "metadata", "name"), err)
		}
		if err := cfg.Validate(false); err != nil {
			t.Errorf("ConfigMap %s: %v", get(cm, "metadata", "name"), err)
		}

		// Files the config names live in mounted Secrets (and, when the
		// Secrets are rendered, are keys of them).
		checkFile := func(what, path string) {
			dir, key := filepath.Split(path)
			for name, mdir := range mounts {
				if filepath.Clean(mdir) != filepath.Clean(dir) {
					continue
				}
				secretName := str(get(volumes[name], "secret", "secretName"))
				if secretName == "" {
					t.Errorf("%s %s: volume %s is not a Secret", what, path, name)
					return
				}
				// Not world-readable: mode 0440, group = the pod's fsGroup.
				if mode, _ := get(volumes[name], "secret", "defaultMode").(int); mode&0o007 != 0 || mode == 0 ||
					get(pod, "securityContext", "fsGroup") != get(pod, "securityContext", "runAsGroup") {
					t.Errorf("%s %s: Secret volume %s must not be world-readable (defaultMode %#o, fsGroup = runAsGroup)", what, path, name, mode)
				}
				if w.secrets {
					s := m.named("Secret", secretName)
					if s == nil || (get(s, "data", key) == nil && get(s, "stringData", key) == nil) {
						t.Errorf("%s %s: Secret %s has no key %s", what, path, secretName, key)
					}
				}
				return
			}
			t.Errorf("%s %s is not in a mounted volume", what, path)
		}
		for _, g := range cfg.Groups() {
			checkFile("app group "+g.Name+" key", g.APIKeyFile)
		}
		if w.natsTLS {
			if !strings.HasPrefix(cfg.NATS.URL, "tls://") || cfg.NATS.CredsFile == "" || cfg.NATS.TLS.CAFile == "" {
				t.Errorf("NATS must use TLS and a creds file: url %s, creds %q, ca %q", cfg.NATS.URL, cfg.NATS.CredsFile, cfg.NATS.TLS.CAFile)
			}
		}
		if cfg.NATS.CredsFile != "" {
			checkFile("nats creds", cfg.NATS.CredsFile)
		}
		if cfg.NATS.TLS.CAFile != "" {
			checkFile("nats CA", cfg.NATS.TLS.CAFile)
		}

		// Ports and probes.
		var portName string
		for _, p := range get(c, "ports").([]any) {
			if get(p, "containerPort") == mustAtoi(t, port(t, cfg.HTTPAddr)) {
				portName = str(get(p, "name"))
			}
		}
		if portName == "" {
			t.Fatalf("no containerPort for http_addr %s", cfg.HTTPAddr)
		}
		for probe, path := range map[string]string{"livenessProbe": ops.HealthPath, "readinessProbe": ops.ReadyPath} {
			if got := str(get(c, probe, "httpGet", "path")); got != path {
				t.Errorf("%s path %q, want %q", probe, got, path)
			}
			if got := get(c, probe, "httpGet", "port"); got != portName {
				t.Errorf("%s port %v, want %q", probe, got, portName)
			}
		}
		if get(pod, "securityContext", "runAsNonRoot") != true || get(c, "securityContext", "readOnlyRootFilesystem") != true ||
			get(c, "securityContext", "allowPrivilegeEscalation") != false {
			t.Error("the container must run as non-root with a read-only root filesystem and no privilege escalation")
		}
		if get(c, "resources", "requests") == nil || get(c, "resources", "limits", "memory") == nil {
			t.Error("resources: requests and a memory limit are required")
		}
		gomem := false
		for _, e := range get(c, "env").([]any) {
			if str(get(e, "name")) == "GOMEMLIMIT" && str(get(e, "valueFrom", "resourceFieldRef", "resource")) == "limits.memory" {
				gomem = true
			}
		}
		if !gomem {
			t.Error("GOMEMLIMIT must come from the container's memory limit (resourceFieldRef limits.memory)")
		}
		if grace, _ := get(pod, "terminationGracePeriodSeconds").(int); grace <= int(cfg.Shutdown.Seconds()) {
			t.Errorf("terminationGracePeriodSeconds %d must exceed shutdown_timeout %s", grace, cfg.Shutdown)
		}
		spread, _ := get(pod, "topologySpreadConstraints").([]any)
		if len(spread) == 0 {
			t.Error("no topologySpreadConstraints")
		}
		for _, sc := range spread {
			if !matches(get(sc, "labelSelector", "matchLabels"), podLabels) {
				t.Error("a topology spread constraint does not select the pods")
			}
		}
		sa := str(get(pod, "serviceAccountName"))
		if m.named("ServiceAccount", sa) == nil || get(pod, "automountServiceAccountToken") != false {
			t.Errorf("serviceAccountName %q must be a ServiceAccount of the rendering, with no token mounted", sa)
		}
		for _, o := range m.objs {
			if ns := get(o, "metadata", "namespace"); o["kind"] != "Namespace" && ns != "sendid" {
				t.Errorf("%s %s: namespace %v, want sendid", o["kind"], get(o, "metadata", "name"), ns)
			}
		}

		// Service, PDB, NetworkPolicy, ServiceMonitor, PrometheusRule.
		svc := m.one(t, "Service")
		if !matches(get(svc, "spec", "selector"), podLabels) || get(svc, "spec", "ports", 0, "targetPort") != portName {
			t.Errorf("the Service must select the pods and target port %q", portName)
		}
		pdb := m.one(t, "PodDisruptionBudget")
		if get(pdb, "spec", "unhealthyPodEvictionPolicy") != "AlwaysAllow" || !matches(get(pdb, "spec", "selector", "matchLabels"), podLabels) {
			t.Error("the PodDisruptionBudget must select the pods with unhealthyPodEvictionPolicy AlwaysAllow")
		}
		if nps := m.all("NetworkPolicy"); w.network {
			if len(nps) != 1 || !matches(get(nps[0], "spec", "podSelector", "matchLabels"), podLabels) {
				t.Error("want one NetworkPolicy selecting the pods")
			} else if p := get(nps[0], "spec", "ingress", 0, "ports", 0, "port"); p != portName && p != mustAtoi(t, port(t, cfg.HTTPAddr)) {
				t.Errorf("NetworkPolicy ingress port %v, want %s", p, portName)
			}
		}
		sms, prs := m.all("ServiceMonitor"), m.all("PrometheusRule")
		if !w.monitoring {
			if len(sms)+len(prs) != 0 {
				t.Error("ServiceMonitor/PrometheusRule must be optional")
			}
			return
		}
		if len(sms) != 1 || len(prs) != 1 {
			t.Fatalf("%d ServiceMonitors and %d PrometheusRules, want 1 each", len(sms), len(prs))
		}
		if p := str(get(sms[0], "spec", "endpoints", 0, "path")); p != ops.MetricsPath {
			t.Errorf("ServiceMonitor path %q", p)
		}
		if p := str(get(sms[0], "spec", "endpoints", 0, "port")); p != str(get(svc, "spec", "ports", 0, "name")) {
			t.Errorf("ServiceMonitor port %q is not the Service's", p)
		}
		if !matches(get(sms[0], "spec", "selector", "matchLabels"), get(svc, "metadata", "labels")) {
			t.Error("the ServiceMonitor does not select the Service")
		}
		rules := docs(t, rulesFile)[0]
		if !reflect.DeepEqual(get(prs[0], "spec", "groups"), rules["groups"]) {
			t.Errorf("PrometheusRule groups differ from %s", rulesFile)
		}
	})
}

var hashedName = regexp.MustCompile(`^sendid-config-[a-z0-9]{10}$`)

// TestKustomize renders the base and the example overlay as
// `kubectl apply -k` does and checks them against the binary.
func TestKustomize(t *testing.T) {
	base := kustomize(t, "kubernetes/base")
	checkManifests(t, base, want{builtinOnly: true, natsTLS: true, network: true})
	// The ConfigMap's name carries a hash of the config: a change rolls the pods.
	if n := str(get(base.one(t, "ConfigMap"), "metadata", "name")); !hashedName.MatchString(n) {
		t.Errorf("ConfigMap %s has no content hash in its name", n)
	}
	if base.one(t, "Namespace") == nil {
		t.Error("no Namespace")
	}
	overlay := kustomize(t, "kubernetes/overlays/example")
	checkManifests(t, overlay, want{secrets: true, monitoring: true, natsTLS: true, network: true})
}

// helmBin is the helm binary, or "" (the Helm checks are then skipped;
// .ci/run builds it).
func helmBin() string {
	p, err := exec.LookPath("helm")
	if err != nil {
		return ""
	}
	return p
}

func helmTemplate(t *testing.T, name string, args ...string) manifests {
	t.Helper()
	cmd := exec.Command(helmBin(), append([]string{"template", "sendid", "helm/sendid", "--namespace", "sendid"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, errb.String())
	}
	return parseManifests(t, name, out.Bytes())
}

// TestHelmChart renders the chart with default and full values and checks
// both like the plain manifests; a config change changes the pod template.
func TestHelmChart(t *testing.T) {
	if helmBin() == "" {
		t.Skip("helm not on PATH (.ci/run builds it): chart not rendered")
	}
	def := helmTemplate(t, "helm default values")
	checkManifests(t, def, want{builtinOnly: true})
	full := helmTemplate(t, "helm full values", "-f", "helm/sendid/ci/full-values.yaml")
	checkManifests(t, full, want{secrets: true, monitoring: true, natsTLS: true, network: true})

	changed := helmTemplate(t, "helm changed config", "--set", "config.log.level=debug")
	a := get(def.one(t, "Deployment"), "spec", "template", "metadata", "annotations")
	b := get(changed.one(t, "Deployment"), "spec", "template", "metadata", "annotations")
	if reflect.DeepEqual(a, b) {
		t.Error("a config change leaves the pod template unchanged: no rollout")
	}
}
