package queue_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/sendid/sendid/queue"
)

type pki struct{ dir, ca, cert, key string }

// newPKI writes a CA and a certificate for 127.0.0.1 signed by it.
func newPKI(t *testing.T, name string) pki {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"}, IsCA: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	p := pki{dir: dir, ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem")}
	write := func(path, typ string, b []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(p.ca, "CERTIFICATE", caDER)
	write(p.cert, "CERTIFICATE", der)
	write(p.key, "EC PRIVATE KEY", keyDER)
	return p
}

func runServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", -1, true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

func TestTLS(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "good")
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: p.cert, KeyFile: p.key, CaFile: p.ca, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	ns := runServer(t, &server.Options{TLSConfig: tc, TLS: true, TLSVerify: true, TLSTimeout: 2})
	url := strings.Replace(ns.ClientURL(), "nats://", "tls://", 1)

	nc, err := queue.Connect(queue.ConnOptions{URL: url, CAFile: p.ca, CertFile: p.cert, KeyFile: p.key, RetryOnFailedConnect: true})
	if err != nil {
		t.Fatalf("verified TLS with a client certificate: %v", err)
	}
	if !nc.IsConnected() || nc.TLSRequired() != true {
		t.Fatalf("not connected over TLS")
	}
	nc.Close()

	// A server certificate from another CA: refused at once, not retried.
	other := newPKI(t, "other")
	start := time.Now()
	_, err = queue.Connect(queue.ConnOptions{URL: url, CAFile: other.ca, CertFile: p.cert, KeyFile: p.key, RetryOnFailedConnect: true})
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("unverifiable server certificate: err %v after %s", err, time.Since(start))
	}
	var unknown x509.UnknownAuthorityError
	var verr *tls.CertificateVerificationError
	if !strings.Contains(err.Error(), "certificate") && !errors.As(err, &unknown) && !errors.As(err, &verr) {
		t.Fatalf("error does not say why: %v", err)
	}
}

func TestNKey(t *testing.T) {
	t.Parallel()
	user, _ := nkeys.CreateUser()
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	ns := runServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	nc, err := queue.Connect(queue.ConnOptions{URL: ns.ClientURL(), NKeyFile: seedFile, RetryOnFailedConnect: true})
	if err != nil {
		t.Fatalf("nkey: %v", err)
	}
	nc.Close()

	stranger, _ := nkeys.CreateUser()
	badSeed, _ := stranger.Seed()
	badFile := filepath.Join(t.TempDir(), "bad.nk")
	_ = os.WriteFile(badFile, badSeed, 0o600)
	start := time.Now()
	if _, err := queue.Connect(queue.ConnOptions{URL: ns.ClientURL(), NKeyFile: badFile, RetryOnFailedConnect: true}); err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("unknown nkey: err %v after %s", err, time.Since(start))
	}
	// Without credentials the server refuses too.
	if _, err := queue.Connect(queue.ConnOptions{URL: ns.ClientURL(), RetryOnFailedConnect: true}); err == nil {
		t.Fatal("connected without credentials")
	}
}

// A server that is merely down is waited for, not refused.
func TestConnectWaitsForAServerThatIsDown(t *testing.T) {
	t.Parallel()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	nc, err := queue.Connect(queue.ConnOptions{URL: "nats://" + addr, RetryOnFailedConnect: true, ReconnectWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("down server refused: %v", err)
	}
	defer nc.Close()
	if nc.IsConnected() {
		t.Fatal("connected to nothing")
	}
}

// Oversized bodies are refused before parsing; a deeply nested body within
// the limit is refused or decoded without a large allocation.
func TestHostileBodiesAllocateLittle(t *testing.T) {
	huge := []byte(`{"campaign_id":"` + strings.Repeat("x", 10<<20) + `"}`)
	nested := []byte(`{"campaign_id":"c","meta":` + strings.Repeat("[", 30000) + strings.Repeat("]", 30000) + `}`)
	for name, body := range map[string][]byte{"10 MiB": huge, "nested 30000 deep": nested} {
		allocs := testing.AllocsPerRun(5, func() {
			if _, err := queue.DecodeJob(body, 64<<10); err == nil {
				t.Fatalf("%s accepted", name)
			}
		})
		var before, after runtimeMem
		before.read()
		_, _ = queue.DecodeJob(body, 64<<10)
		after.read()
		if grew := after.total - before.total; grew > 4<<20 {
			t.Errorf("%s: decoding allocated %d bytes", name, grew)
		}
		t.Logf("%s: %.0f allocations per decode", name, allocs)
	}
}
