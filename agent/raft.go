package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// raftNode bundles a Raft instance with the stores it owns, so they close together.
type raftNode struct {
	*raft.Raft
	transport *raft.NetworkTransport
	store     *raftboltdb.BoltStore
	snaps     raft.SnapshotStore
}

// raftTimings are tuned for fast failover on a LAN of small machines: a dead leader is
// replaced in well under 3 s. Heartbeats are not written to disk, so they cost no wear.
func raftConfig(name string, snapshotThreshold uint64, logger hclog.Logger) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(name)
	c.Logger = logger
	c.HeartbeatTimeout = 1000 * time.Millisecond
	c.ElectionTimeout = 1000 * time.Millisecond
	c.LeaderLeaseTimeout = 500 * time.Millisecond
	c.CommitTimeout = 20 * time.Millisecond
	// Snapshot rarely: each snapshot is a write; the log is small anyway.
	c.SnapshotThreshold = snapshotThreshold
	c.SnapshotInterval = 2 * time.Minute
	c.TrailingLogs = min(2048, snapshotThreshold)
	return c
}

// openRaft opens (or creates) the node's Raft state in dataDir/raft and starts Raft. The
// log and stable store is one bbolt file (raft-boltdb/v2), snapshots are files.
func openRaft(dataDir, name string, fsm raft.FSM, stream raft.StreamLayer, snapshotThreshold uint64, log *slog.Logger) (*raftNode, error) {
	dir := filepath.Join(dataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("raft: %w", err)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{log}})
	dbPath := filepath.Join(dir, "raft.db")
	store, err := raftboltdb.New(raftboltdb.Options{
		Path:        dbPath,
		BoltOptions: &bbolt.Options{Timeout: 2 * time.Second},
	})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, fmt.Errorf("raft: %s is locked: is another skiff agent using data dir %s?", dbPath, dataDir)
		}
		return nil, fmt.Errorf("raft: open %s: %w (if the file is corrupt, move it away and rejoin the cluster)", dbPath, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, logger)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("raft: snapshots: %w", err)
	}
	cache, err := raft.NewLogCache(256, store)
	if err != nil {
		store.Close()
		return nil, err
	}
	transport := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 3, Timeout: 5 * time.Second, Logger: logger,
	})
	r, err := raft.NewRaft(raftConfig(name, snapshotThreshold, logger), fsm, cache, store, snaps, transport)
	if err != nil {
		transport.Close()
		store.Close()
		return nil, fmt.Errorf("raft: %w", err)
	}
	return &raftNode{Raft: r, transport: transport, store: store, snaps: snaps}, nil
}

// hasState reports whether this node has Raft state (it was bootstrapped or joined).
func (n *raftNode) hasState(dataDir string) (bool, error) {
	return raft.HasExistingState(n.store, n.store, n.snaps)
}

// bootstrap makes this node a cluster of one if it has no Raft state yet.
func (n *raftNode) bootstrap(name, addr string) error {
	f := n.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
		ID: raft.ServerID(name), Address: raft.ServerAddress(addr), Suffrage: raft.Voter,
	}}})
	if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("raft bootstrap: %w", err)
	}
	return nil
}

func (n *raftNode) close() error {
	err := n.Shutdown().Error()
	n.transport.Close()
	return errors.Join(err, n.store.Close())
}

// tlsStream is Raft's stream layer over TCP with mutual TLS: both ends present node
// certificates from the cluster CA, so no one else can read or write the log.
type tlsStream struct {
	net.Listener
	advertise net.Addr
	client    *tls.Config
}

func listenTLS(bind, advertise string, server, client *tls.Config) (*tlsStream, error) {
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, fmt.Errorf("raft advertise %s: %w", advertise, err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		return nil, fmt.Errorf("raft advertise %s: not an address peers can dial; set --advertise", advertise)
	}
	l, err := tls.Listen("tcp", bind, server)
	if err != nil {
		return nil, fmt.Errorf("raft listen %s: %w", bind, err)
	}
	return &tlsStream{Listener: l, advertise: adv, client: client}, nil
}

func (t *tlsStream) Addr() net.Addr { return t.advertise }

func (t *tlsStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	return tls.DialWithDialer(d, "tcp", string(addr), t.client)
}

// slogWriter forwards hclog's text lines to slog.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	msg := string(p)
	for len(msg) > 0 && (msg[len(msg)-1] == '\n') {
		msg = msg[:len(msg)-1]
	}
	w.log.Warn(msg, "component", "raft")
	return len(p), nil
}

var _ io.Writer = slogWriter{}
