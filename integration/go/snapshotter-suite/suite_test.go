// Package snapshottersuite runs containerd's own snapshotter test suite
// (core/snapshots/testsuite) against revive-snapshotter, through containerd's
// snapshot proxy (core/snapshots/proxy), as containerd talks to it.
//
// The suite calls the factory below once per case with a fresh root; the
// factory starts a revive-snapshotter process on that root and a socket beside
// it, and the cleanup it returns stops the process. The binary is named by
// $REVIVE_SNAPSHOTTER. Built with `go test -c` by revive's integration harness
// (integration/src/peers.rs), which pins containerd to the version its nodes
// run; run as root (the suite mounts).
package snapshottersuite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/proxy"
	"github.com/containerd/containerd/v2/core/snapshots/testsuite"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The name the suite knows the snapshotter by. revive-snapshotter mounts as
// containerd's overlayfs snapshotter does (overlay without redirect_dir), and
// the suite's Rename case expects exactly that of the snapshotters it names
// "overlayfs": renaming a directory of a lower layer is not attempted, since
// overlayfs refuses it (EXDEV) and containerd's differ copies instead.
const suiteName = "overlayfs"

// How long a started snapshotter may take to accept connections, and a
// stopped one to exit.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 30 * time.Second
)

func TestReviveSnapshotter(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("containerd's snapshotter suite mounts: it needs root")
	}
	binary := os.Getenv("REVIVE_SNAPSHOTTER")
	if binary == "" {
		t.Fatal("REVIVE_SNAPSHOTTER must name the revive-snapshotter binary")
	}
	testsuite.SnapshotterSuite(t, suiteName, func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		return start(t, binary, root)
	})
}

// start runs revive-snapshotter on root, its socket beside root (in the
// case's own temporary directory), and connects the proxy to it.
func start(t *testing.T, binary, root string) (snapshots.Snapshotter, func() error, error) {
	dir := filepath.Dir(root)
	socket := filepath.Join(dir, "revive-snapshotter.sock")
	cmd := exec.Command(binary,
		"--root", root,
		"--address", socket,
		// No containerd: the suite's snapshots are never checkpoint images.
		"--containerd-socket", filepath.Join(dir, "no-containerd.sock"),
		"--log-level", "warn",
	)
	logs := &lineLogger{t: t, prefix: "revive-snapshotter: "}
	cmd.Stdout = logs
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", binary, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() error {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return err
		}
		select {
		case err := <-exited:
			if err != nil {
				return fmt.Errorf("revive-snapshotter exited with %w", err)
			}
			return nil
		case <-time.After(stopTimeout):
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("revive-snapshotter did not stop within %s of SIGTERM", stopTimeout)
		}
	}
	if err := waitForSocket(socket, exited); err != nil {
		_ = stop()
		return nil, nil, err
	}
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		_ = stop()
		return nil, nil, fmt.Errorf("connecting to %s: %w", socket, err)
	}
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "revive")
	cleanup := func() error {
		return errors.Join(conn.Close(), stop())
	}
	return sn, cleanup, nil
}

// waitForSocket waits until socket accepts connections, or the process exits.
func waitForSocket(socket string, exited <-chan error) error {
	deadline := time.Now().Add(startTimeout)
	for {
		conn, err := net.Dial("unix", socket)
		if err == nil {
			return conn.Close()
		}
		select {
		case werr := <-exited:
			return fmt.Errorf("revive-snapshotter exited before serving %s: %v", socket, werr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("revive-snapshotter did not serve %s within %s: %w", socket, startTimeout, err)
		}
	}
}

// lineLogger copies a process's output into the test's log, line by line.
type lineLogger struct {
	t       *testing.T
	prefix  string
	pending []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.pending = append(l.pending, p...)
	for {
		i := bytes.IndexByte(l.pending, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.t.Log(l.prefix + string(l.pending[:i]))
		l.pending = l.pending[i+1:]
	}
}
