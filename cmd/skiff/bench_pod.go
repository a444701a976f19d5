package main

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The benchmark's pods as the JSON of core/v1 Pods: the fields they set, with the API's JSON
// names. They are types of their own because skiff's binary must not link k8s.io/api (see
// agent/kube/core); TestBenchPodJSON checks them against k8s.io/api's Pod.
type (
	benchPodObject struct {
		metav1.ObjectMeta `json:"metadata"`
		Spec              benchPodSpec `json:"spec"`
	}
	benchPodSpec struct {
		NodeName                      string           `json:"nodeName"`
		Containers                    []benchContainer `json:"containers"`
		Volumes                       []benchVolume    `json:"volumes"`
		TerminationGracePeriodSeconds int64            `json:"terminationGracePeriodSeconds"`
	}
	benchContainer struct {
		Name            string             `json:"name"`
		Image           string             `json:"image"`
		Args            []string           `json:"args"`
		Env             []benchEnvVar      `json:"env"`
		Ports           []benchPort        `json:"ports,omitempty"`
		Resources       benchResources     `json:"resources"`
		LivenessProbe   *benchProbe        `json:"livenessProbe,omitempty"`
		ReadinessProbe  *benchProbe        `json:"readinessProbe,omitempty"`
		VolumeMounts    []benchVolumeMount `json:"volumeMounts"`
		ImagePullPolicy string             `json:"imagePullPolicy"`
	}
	benchEnvVar struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	}
	benchPort struct {
		Name          string `json:"name"`
		ContainerPort int32  `json:"containerPort"`
		Protocol      string `json:"protocol"`
	}
	// benchResources maps resource names to quantities ("100m", "128Mi").
	benchResources struct {
		Requests map[string]string `json:"requests"`
		Limits   map[string]string `json:"limits"`
	}
	benchProbe struct {
		HTTPGet          benchHTTPGet `json:"httpGet"`
		PeriodSeconds    int32        `json:"periodSeconds"`
		TimeoutSeconds   int32        `json:"timeoutSeconds"`
		SuccessThreshold int32        `json:"successThreshold"`
		FailureThreshold int32        `json:"failureThreshold"`
	}
	benchHTTPGet struct {
		Path string `json:"path"`
		Port string `json:"port"` // a named port
	}
	benchVolumeMount struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
		ReadOnly  bool   `json:"readOnly"`
	}
	benchVolume struct {
		Name      string               `json:"name"`
		ConfigMap benchConfigMapVolume `json:"configMap"`
	}
	benchConfigMapVolume struct {
		Name string `json:"name"`
	}
)

// withSidecars adds n sidecar containers (sidecar-1 …) to p's spec and returns p.
func withSidecars(p *benchPodObject, n int) *benchPodObject {
	app := p.Spec.Containers[0]
	for k := 1; k <= n; k++ {
		c := app
		c.Name = fmt.Sprintf("sidecar-%d", k)
		c.Image = "registry.example.com/mesh/proxy:1.22.0"
		c.Ports = nil
		c.LivenessProbe, c.ReadinessProbe = nil, nil
		p.Spec.Containers = append(p.Spec.Containers, c)
	}
	return p
}

// benchPod is pod i of a Deployment's ReplicaSet in namespace ns, on benchNode, with one
// container and the labels, annotations and spec size of a typical Helm-deployed service.
func benchPod(i int, ns string) *benchPodObject {
	app := fmt.Sprintf("svc-%02d", i%40)
	const hash = "7d4b9c6f8"
	image := "registry.example.com/shop/" + app + ":1.4.2"
	env := make([]benchEnvVar, 12)
	for k := range env {
		env[k] = benchEnvVar{Name: fmt.Sprintf("SETTING_NUMBER_%d", k), Value: fmt.Sprintf("value-of-setting-%d-for-%s", k, app)}
	}
	probe := &benchProbe{
		HTTPGet:       benchHTTPGet{Path: "/healthz", Port: "http"},
		PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3,
	}
	return &benchPodObject{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-%s-x%04d", app, hash, i), Namespace: ns, GenerateName: app + "-" + hash + "-",
			Labels: map[string]string{
				"app": app, "app.kubernetes.io/name": app, "app.kubernetes.io/instance": app + "-prod",
				"app.kubernetes.io/version": "1.4.2", "app.kubernetes.io/component": "server",
				"app.kubernetes.io/part-of": "shop", "app.kubernetes.io/managed-by": "Helm", "pod-template-hash": hash,
			},
			Annotations: map[string]string{
				"kubectl.kubernetes.io/restartedAt":              "2026-11-27T10:04:05Z",
				"kubectl.kubernetes.io/default-container":        "app",
				"prometheus.io/scrape":                           "true",
				"prometheus.io/port":                             "9090",
				"prometheus.io/path":                             "/metrics",
				"checksum/config":                                strings.Repeat("0f", 32),
				"checksum/secret":                                strings.Repeat("a5", 32),
				"cluster-autoscaler.kubernetes.io/safe-to-evict": "true",
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-" + hash,
				UID: "0b6d1c3e-58a4-4c1e-9d0b-5b1c2d3e4f50", Controller: new(true), BlockOwnerDeletion: new(true)}},
		},
		Spec: benchPodSpec{
			NodeName: benchNode,
			Containers: []benchContainer{{
				Name: "app", Image: image, Args: []string{"--config=/etc/app/config.yaml", "--log-format=json"}, Env: env,
				Ports: []benchPort{{Name: "http", ContainerPort: 8080, Protocol: "TCP"},
					{Name: "metrics", ContainerPort: 9090, Protocol: "TCP"}},
				Resources: benchResources{
					Requests: map[string]string{"cpu": "100m", "memory": "128Mi"},
					Limits:   map[string]string{"memory": "256Mi"},
				},
				LivenessProbe: probe, ReadinessProbe: probe,
				VolumeMounts:    []benchVolumeMount{{Name: "config", MountPath: "/etc/app", ReadOnly: true}},
				ImagePullPolicy: "IfNotPresent",
			}},
			Volumes:                       []benchVolume{{Name: "config", ConfigMap: benchConfigMapVolume{Name: app + "-config"}}},
			TerminationGracePeriodSeconds: 30,
		},
	}
}
