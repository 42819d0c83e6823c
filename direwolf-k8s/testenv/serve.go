package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/client-go/kubernetes"
)

// serveFlags are serve's command line.
type serveFlags struct {
	dir       string
	port      int
	ownerPID  int
	removeDir bool
	nodes     int
	gpus      int
}

func parseServeFlags(args []string) (serveFlags, error) {
	var f serveFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&f.dir, "dir", "", "directory for the kubeconfig, certificates, etcd data")
	fs.IntVar(&f.port, "port", 0, "kube-apiserver port on 127.0.0.1 (0: a free one)")
	fs.IntVar(&f.ownerPID, "owner-pid", 0, "stop when this process has ended (0: never)")
	fs.BoolVar(&f.removeDir, "remove-dir", false, "remove --dir after stopping")
	fs.IntVar(&f.nodes, "nodes", 2, "fake nodes to register")
	fs.IntVar(&f.gpus, "gpus-per-node", 2, "nvidia.com/gpu capacity of each fake node")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if f.dir == "" {
		return f, errors.New("serve needs --dir")
	}
	return f, nil
}

// serve runs the control plane until SIGTERM/SIGINT or the owner's end, then stops it.
func serve(args []string) error {
	f, err := parseServeFlags(args)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if f.ownerPID != 0 {
		ctx = untilProcessEnds(ctx, f.ownerPID)
	}
	listener, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", f.port))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("port in use: 127.0.0.1:%d (kube-apiserver)", f.port)
		}
		return fmt.Errorf("cannot listen on 127.0.0.1:%d: %w", f.port, err)
	}
	etcd, etcdURL, err := startEtcd(f.dir)
	if err != nil {
		return err
	}
	cp, err := startControlPlane(ctx, f, listener, etcdURL)
	if err == nil {
		fmt.Fprintf(os.Stderr, "testenv: control plane ready at %s\n", cp.server)
		err = cp.wait(ctx)
	}
	shutdown(cp, etcd)
	if f.removeDir {
		if rmErr := os.RemoveAll(f.dir); rmErr != nil && err == nil {
			err = rmErr
		}
	}
	return err
}

// shutdown waits (bounded) for the components to stop after their context ended, then stops etcd.
func shutdown(cp *controlPlane, etcd *embed.Etcd) {
	if cp != nil {
		cp.cancel()
		select {
		case <-cp.apiserver:
		case <-time.After(15 * time.Second):
			fmt.Fprintln(os.Stderr, "testenv: kube-apiserver did not stop within 15 s")
		}
	}
	etcd.Close()
}

// untilProcessEnds is ctx, also ended once process pid no longer exists (checked every 500 ms).
func untilProcessEnds(ctx context.Context, pid int) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
					fmt.Fprintf(os.Stderr, "testenv: owner process %d ended; stopping\n", pid)
					cancel()
					return
				}
			}
		}
	}()
	return ctx
}

// writeFileAtomic writes path through a temporary file and a rename, so a reader sees the whole
// file or none (scripts/kube-testenv waits for the kubeconfig to appear).
func writeFileAtomic(path string, write func(string) error) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := write(tmp); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// newClient is a client of the kube-apiserver with the given kubeconfig.
func newClient(kubeconfig string) (*kubernetes.Clientset, error) {
	config, err := restConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(config)
}
