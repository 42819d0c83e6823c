package main

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// fakeNodeAnnotation marks the nodes kwok plays (its node annotation selector).
const fakeNodeAnnotation = "kwok.x-k8s.io/node=fake"

// gpuResource is the extended resource the NVIDIA device plugin advertises.
const gpuResource corev1.ResourceName = "nvidia.com/gpu"

// fakeNode is a Node with no kubelet behind it: kwok plays its kubelet. Its capacity names
// GPUs so that Pods requesting nvidia.com/gpu are scheduled as on a GPU node.
func fakeNode(name string, gpus int) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("32"),
		corev1.ResourceMemory:           resource.MustParse("128Gi"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("1Ti"),
		gpuResource:                     *resource.NewQuantity(int64(gpus), resource.DecimalSI),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
				"nvidia.com/gpu.present": "true",
			},
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity.DeepCopy()},
	}
}

// createNodes registers n fake nodes named testenv-node-1…n with gpus GPUs each (a Node's
// status may be set on create, as a kubelet registering itself does).
func createNodes(ctx context.Context, client kubernetes.Interface, n, gpus int) error {
	for i := 1; i <= n; i++ {
		node := fakeNode(fmt.Sprintf("testenv-node-%d", i), gpus)
		if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create node %s: %w", node.Name, err)
		}
	}
	return nil
}
