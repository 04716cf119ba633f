package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sendid/sendid/config"
	"github.com/sendid/sendid/gateway"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
)

// startGateway runs the Braze-compatible front door when gateway.addr is set
// or in -dev (plain HTTP, plus HTTPS with a self-signed certificate kept in
// the dev folder). It returns nil when the gateway is off.
func startGateway(ctx context.Context, f flags, cfg *config.Config, keys map[string]config.Secret, getenv func(string) string,
	nc *nats.Conn, js jetstream.JetStream, buckets queue.Buckets, ledger quota.Ledger, reg prometheus.Registerer, log *zap.Logger) (*gateway.Gateway, error) {
	gc := cfg.Gateway
	if gc.Addr == "" && !f.dev {
		return nil, nil
	}
	creds, err := gatewayCredentials(cfg, keys, getenv)
	if err != nil {
		return nil, err
	}
	var listeners []gateway.Listener
	main := gateway.Listener{Addr: gc.Addr}
	if main.Addr == "" {
		main.Addr, main.AnyPortIfBusy = config.DevGatewayAddr, true
	}
	if gc.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(gc.TLS.CertFile, gc.TLS.KeyFile)
		if err != nil {
			return nil, &config.Error{Problems: []string{"gateway.tls.cert_file, gateway.tls.key_file: " + err.Error()}}
		}
		main.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	listeners = append(listeners, main)
	if f.dev && cfg.Dev.GatewayTLSAddr != "" {
		cert, err := devCertificate(filepath.Join(cfg.Dev.DataDir, "gateway-tls"))
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, gateway.Listener{Addr: cfg.Dev.GatewayTLSAddr, AnyPortIfBusy: cfg.Dev.GatewayTLSAddr == config.DevGatewayTLSAddr,
			TLS: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}})
	}
	gw, err := gateway.New(gateway.Options{
		NC: nc, JS: js, Subjects: queue.Subjects{Prefix: cfg.SubjectPrefix},
		Finals: gateway.RecordFinals(queue.NewRecords(buckets.Jobs, buckets.Pairs)), Usage: ledger,
		Credentials: creds, Listeners: listeners, Log: log, Metrics: gateway.NewMetrics(reg),
		MaxBodyBytes: cfg.MaxJobBytes, Wait: gc.Wait, MaxWaiting: gc.MaxWaiting,
		ReadHeaderTimeout: gc.ReadHeaderTimeout, ReadTimeout: gc.ReadTimeout, WriteTimeout: gc.WriteTimeout, IdleTimeout: gc.IdleTimeout,
		StoreReplicas: cfg.Streams.Replicas, StoreTTL: cfg.Streams.JobRecordTTL,
	})
	if err != nil {
		return nil, err
	}
	if err := gw.Start(ctx); err != nil {
		return nil, err
	}
	return gw, nil
}

// stopGateway stops the gateway (nil: off) and waits for it.
func stopGateway(gw *gateway.Gateway) {
	if gw != nil {
		gw.Shutdown()
	}
}

// reloadGateway gives the gateway the reloaded keys and tokens.
func reloadGateway(gw *gateway.Gateway, cfg *config.Config, keys map[string]config.Secret, getenv func(string) string) error {
	if gw == nil {
		return nil
	}
	creds, err := gatewayCredentials(cfg, keys, getenv)
	if err != nil {
		return err
	}
	return gw.SetCredentials(creds)
}

// checkGateway is -check-config for the gateway: token sources are always
// read; whether every token names one group, and the listener's
// certificate, matter when the gateway is on.
func checkGateway(f flags, cfg *config.Config, keys map[string]config.Secret, getenv func(string) string) error {
	creds, err := gatewayCredentials(cfg, keys, getenv)
	if err != nil || (cfg.Gateway.Addr == "" && !f.dev) {
		return err
	}
	if t := cfg.Gateway.TLS; t.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			return &config.Error{Problems: []string{"gateway.tls.cert_file, gateway.tls.key_file: " + err.Error()}}
		}
	}
	return gateway.CheckCredentials(creds)
}

// gatewayCredentials are every group's API key and gateway tokens.
func gatewayCredentials(cfg *config.Config, keys map[string]config.Secret, getenv func(string) string) ([]gateway.Credential, error) {
	tokens, err := cfg.LoadGatewayTokens(getenv)
	if err != nil {
		return nil, err
	}
	var out []gateway.Credential
	for _, g := range cfg.Groups() {
		out = append(out, gateway.Credential{Group: g.Name, Token: keys[g.Name]})
		for _, t := range tokens[g.Name] {
			out = append(out, gateway.Credential{Group: g.Name, Token: t})
		}
	}
	return out, nil
}

// devCertificate loads, or creates, a self-signed certificate for the
// loopback names in dir.
func devCertificate(dir string) (tls.Certificate, error) {
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if c, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil && c.Leaf != nil && time.Now().Add(24*time.Hour).Before(c.Leaf.NotAfter) {
		return c, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("dev certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("dev certificate: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "sendid -dev gateway"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("dev certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("dev certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("dev certificate: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return tls.Certificate{}, fmt.Errorf("dev certificate: %w", err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, fmt.Errorf("dev certificate: %w", err)
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// printGatewayBanner adds the gateway's URLs and a curl command to the -dev
// banner. The key is shown only when it is the -dev placeholder.
func printGatewayBanner(out io.Writer, gw *gateway.Gateway, keys map[string]config.Secret) {
	if gw != nil {
		gatewayBanner(out, gw.URLs(), keys)
	}
}

func gatewayBanner(out io.Writer, urls []string, keys map[string]config.Secret) {
	key := "<API key of app group default>"
	if k, ok := keys[config.DefaultGroup]; ok && k.Reveal() == config.DevKey {
		key = config.DevKey
	}
	fmt.Fprintf(out, "  Braze-compatible gateway  %s\n", strings.Join(urls, "  "))
	fmt.Fprintf(out, "  (HTTPS uses a self-signed certificate: curl -k, newman --insecure)\n\n")
	fmt.Fprintf(out, "  Braze's curl command, only the host changed:\n\n")
	fmt.Fprintf(out, "    curl -X POST -H 'Content-Type: application/json' -H 'Authorization: Bearer %s' \\\n", key)
	fmt.Fprintf(out, "      -d '{\"campaign_id\": \"campaign_identifier\", \"send_id\": \"send_identifier\"}' \\\n")
	fmt.Fprintf(out, "      %s/sends/id/create\n\n", urls[0])
}
