package kube

import (
	"fmt"

	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-logs/skiff/agent/kube/core"
)

// userAgent identifies skiff in the apiserver's audit log and metrics.
const userAgent = "skiff"

// RESTConfig loads the client configuration: from the kubeconfig file when kubeconfig is set,
// else the in-cluster configuration (the pod's ServiceAccount token and CA, and the
// KUBERNETES_SERVICE_HOST/PORT environment).
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubernetes.kubeconfig %s: %w", kubeconfig, err)
		}
		return rc, nil
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes in-cluster configuration (set kubernetes.kubeconfig when skiff runs outside a pod): %w", err)
	}
	return rc, nil
}

// Clients makes the clients an Enricher needs from rc: a core/v1 client for pods (slim types, JSON; see
// package core) and client-go's metadata client for namespaces' metadata only.
func Clients(rc *rest.Config) (*core.Client, metadata.Interface, error) {
	rc = rest.CopyConfig(rc)
	if rc.UserAgent == "" {
		rc.UserAgent = userAgent
	}
	meta, err := metadata.NewForConfig(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes metadata client: %w", err)
	}
	pods, err := core.New(rc)
	if err != nil {
		return nil, nil, err
	}
	return pods, meta, nil
}
