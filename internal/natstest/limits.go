package natstest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// StartLimited runs a server whose only account (user "sendid", password
// "sendid") has JetStream limits of maxConsumers consumers per stream, as
// an operator or a hosted NATS plan sets them. It returns the server and a
// client URL carrying the user; the server shuts down when the test ends.
func StartLimited(t testing.TB, maxConsumers int) (*Server, string) {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats.conf")
	body := fmt.Sprintf(`listen: "127.0.0.1:-1"
jetstream { store_dir: %q }
accounts {
  TENANT {
    jetstream { max_consumers: %d, max_mem: -1, max_file: -1, max_streams: -1 }
    users [ { user: sendid, password: sendid } ]
  }
}
`, filepath.Join(dir, "store"), maxConsumers)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats config: %v", err)
	}
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready after 10s")
	}
	s := &Server{t: t, dir: dir, NS: ns, port: ns.Addr().(*net.TCPAddr).Port}
	t.Cleanup(s.Shutdown)
	return s, fmt.Sprintf("nats://sendid:sendid@127.0.0.1:%d", s.port)
}
