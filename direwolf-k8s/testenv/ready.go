package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// readyTimeout bounds each wait of the start: /readyz, and the nodes becoming Ready.
const readyTimeout = 60 * time.Second

func restConfig(kubeconfig string) (*rest.Config, error) {
	return clientcmd.BuildConfigFromFlags("", kubeconfig)
}

// waitReadyz polls the kube-apiserver's /readyz until it answers 200, the server stops, or
// readyTimeout passes.
func waitReadyz(ctx context.Context, client kubernetes.Interface, stopped <-chan error) error {
	return poll(ctx, "kube-apiserver /readyz", func(ctx context.Context) (bool, error) {
		select {
		case err := <-stopped:
			return false, ended("kube-apiserver", err)
		default:
		}
		status := 0
		client.CoreV1().RESTClient().Get().AbsPath("/readyz").Do(ctx).StatusCode(&status)
		return status == 200, nil
	})
}

// waitNodesReady waits until n nodes report Ready (kwok's node stage).
func waitNodesReady(ctx context.Context, client kubernetes.Interface, n int) error {
	return poll(ctx, fmt.Sprintf("%d fake nodes Ready", n), func(ctx context.Context) (bool, error) {
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, node := range nodes.Items {
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready >= n, nil
	})
}

// poll calls check every 100 ms until it is done, fails, ctx ends or readyTimeout passes.
func poll(ctx context.Context, what string, check func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		done, err := check(ctx)
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not within %s", what, readyTimeout)
		case <-tick.C:
		}
	}
}
