// Package natstest runs embedded nats-server instances with JetStream for
// tests: a single server on a loopback port with its own store directory,
// restartable on the same directory and port.
package natstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is an embedded JetStream server owned by a test.
type Server struct {
	t    testing.TB
	dir  string
	port int
	NS   *server.Server
}

// Start runs a server on 127.0.0.1 with a fresh store directory. It shuts
// down when the test ends.
func Start(t testing.TB) *Server { return StartOn(t, -1) }

// StartOn is Start on a given port (-1: any free port).
func StartOn(t testing.TB, port int) *Server {
	t.Helper()
	s := &Server{t: t, dir: t.TempDir(), port: port}
	s.start()
	t.Cleanup(s.Shutdown)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	ns, err := server.NewServer(&server.Options{
		ServerName: "test", Host: "127.0.0.1", Port: s.port, JetStream: true, StoreDir: s.dir, NoSigs: true, NoLog: true,
	})
	if err != nil {
		s.t.Fatalf("nats server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		s.t.Fatal("nats server not ready after 10s")
	}
	s.NS = ns
	s.port = ns.Addr().(*net.TCPAddr).Port
}

// URL is the client URL.
func (s *Server) URL() string { return s.NS.ClientURL() }

// Shutdown stops the server and waits for it.
func (s *Server) Shutdown() {
	if s.NS != nil {
		s.NS.Shutdown()
		s.NS.WaitForShutdown()
		s.NS = nil
	}
}

// Restart stops the server and starts it again on the same port and store
// directory.
func (s *Server) Restart() {
	s.t.Helper()
	s.Shutdown()
	s.start()
}

// Connect returns a client connection that reconnects forever and a
// JetStream handle; the connection closes when the test ends.
func (s *Server) Connect() (*nats.Conn, jetstream.JetStream) {
	s.t.Helper()
	nc, err := nats.Connect(s.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		s.t.Fatalf("connect: %v", err)
	}
	s.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		s.t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}
