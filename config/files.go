package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
)

// CheckFiles reports every file the NATS settings name (credentials, nkey
// seed, TLS CA, client certificate and key) that is missing, unreadable or
// not what its key says, each problem naming its key. API key files are
// read, and reported, by LoadKeys. A file's content never appears in a
// problem.
func (c *Config) CheckFiles() []string {
	var p []string
	readable := func(key, path string) bool {
		if path == "" {
			return false
		}
		f, err := os.Open(path)
		if err != nil {
			p = append(p, fmt.Sprintf("%s: %v", key, err))
			return false
		}
		defer f.Close()
		st, err := f.Stat()
		if err == nil && st.IsDir() {
			p = append(p, fmt.Sprintf("%s: %s is a directory, not a file", key, path))
			return false
		}
		if _, err := f.Read(make([]byte, 1)); err != nil && err != io.EOF {
			p = append(p, fmt.Sprintf("%s: %s cannot be read: %v", key, path, err))
			return false
		}
		return true
	}
	readable("nats.creds_file", c.NATS.CredsFile)
	readable("nats.nkey_file", c.NATS.NKeyFile)
	t := c.NATS.TLS
	if readable("nats.tls.ca_file", t.CAFile) {
		if pem, err := os.ReadFile(t.CAFile); err == nil && !x509.NewCertPool().AppendCertsFromPEM(pem) {
			p = append(p, fmt.Sprintf("nats.tls.ca_file: %s holds no PEM certificate", t.CAFile))
		}
	}
	certOK := readable("nats.tls.cert_file", t.CertFile)
	keyOK := readable("nats.tls.key_file", t.KeyFile)
	if certOK && keyOK {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			p = append(p, fmt.Sprintf("nats.tls.cert_file, nats.tls.key_file: not a matching PEM certificate and key (%v)", err))
		}
	}
	return p
}
