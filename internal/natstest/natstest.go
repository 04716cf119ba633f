// Package natstest runs embedded nats-server instances with JetStream for
// tests: a single server on a loopback port with its own store directory,
// restartable on the same directory and port, or a 3-node cluster.
package natstest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
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

// Cluster is an in-process JetStream cluster.
type Cluster struct {
	t     testing.TB
	Nodes []*server.Server
	opts  []*server.Options
}

// StartCluster runs n JetStream nodes routed to each other on loopback.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	var routes []*url.URL
	for _, p := range ports {
		u, _ := url.Parse(fmt.Sprintf("nats://127.0.0.1:%d", p))
		routes = append(routes, u)
	}
	c := &Cluster{t: t}
	for i := range n {
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
			NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "sendid-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:  routes,
		}
		ns, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		c.Nodes, c.opts = append(c.Nodes, ns), append(c.opts, o)
	}
	for _, ns := range c.Nodes {
		if !ns.ReadyForConnections(20 * time.Second) {
			t.Fatal("cluster node not ready")
		}
	}
	t.Cleanup(func() {
		for _, ns := range c.Nodes {
			ns.Shutdown()
			ns.WaitForShutdown()
		}
	})
	// JetStream needs a meta leader before streams can be created.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ready := false
		for _, ns := range c.Nodes {
			if ns.JetStreamIsLeader() {
				ready = true
			}
		}
		if ready {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatal("no JetStream meta leader after 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URLs is the comma-separated client URL list of every node.
func (c *Cluster) URLs() string {
	var s []string
	for _, ns := range c.Nodes {
		s = append(s, ns.ClientURL())
	}
	return strings.Join(s, ",")
}

// Kill shuts down the node named name.
func (c *Cluster) Kill(name string) bool {
	for _, ns := range c.Nodes {
		if ns.Name() == name {
			ns.Shutdown()
			ns.WaitForShutdown()
			return true
		}
	}
	return false
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
