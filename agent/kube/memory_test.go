package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	kjson "sigs.k8s.io/json"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/kube/core"
	"github.com/skiff-logs/skiff/outputs/document"
)

// Sizes of the node the memory benchmark models.
const (
	memPods       = 500
	memNamespaces = 200
)

// BenchmarkCacheMemory reports the heap the caches take with memPods pods on the node and
// memNamespaces namespaces, as the live heap after the first sync minus the heap before the
// informers started (the fake API's own copies are in both): "slim" is the Enricher,
// "slim-encoded" the same once every container's Kube holds its document encoding, "full" an
// informer pair keeping whole pods and namespaces, for comparison. Run it with -benchtime=1x.
func BenchmarkCacheMemory(b *testing.B) {
	objs := memObjects()
	slim := func(encode bool) func(*testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				b.ReportMetric(heapOf(b, objs, func(ctx context.Context, fc *fakeClients) func() {
					e, err := New(fc.pods(), fc.meta, testConfig())
					if err != nil {
						b.Fatal(err)
					}
					go func() { _ = e.Run(ctx) }()
					if !e.WaitSynced(ctx) {
						b.Fatal("no sync")
					}
					if n := len(e.byUID); n != memPods {
						b.Fatalf("%d pods cached, want %d", n, memPods)
					}
					for _, p := range e.byUID {
						for _, k := range p.kubes {
							if encode {
								document.Append(nil, &event.Record{Kube: k})
							}
						}
					}
					return func() { runtime.KeepAlive(e) }
				}), "heap-bytes")
			}
		}
	}
	b.Run("slim", slim(false))
	// As slim, after every container logged: each Kube holds its document encoding.
	b.Run("slim-encoded", slim(true))
	b.Run("full", func(b *testing.B) {
		for b.Loop() {
			b.ReportMetric(heapOf(b, objs, func(ctx context.Context, fc *fakeClients) func() {
				pods := informers.NewSharedInformerFactory(fc.client, 0).Core().V1().Pods().Informer()
				nss := metadatainformer.NewSharedInformerFactory(fc.meta, 0).ForResource(namespacesGVR).Informer()
				go pods.RunWithContext(ctx)
				go nss.RunWithContext(ctx)
				if !cache.WaitForCacheSync(ctx.Done(), pods.HasSynced, nss.HasSynced) {
					b.Fatal("no sync")
				}
				return func() { runtime.KeepAlive(pods); runtime.KeepAlive(nss) }
			}), "heap-bytes")
		}
	})
}

// BenchmarkDecodePods decodes a list of memPods realistic pods as the client does when the
// informer lists them: into core's slim types from JSON (what skiff does), and into k8s.io/api's
// Pod from JSON and from protobuf (what it did), for comparison. The list's bytes are the
// apiserver's answer; B/op is what the decoded list allocates before the transform slims it.
func BenchmarkDecodePods(b *testing.B) {
	list := &corev1.PodList{}
	for _, o := range memObjects() {
		if p, ok := o.(*corev1.Pod); ok {
			list.Items = append(list.Items, *p)
		}
	}
	js, err := json.Marshal(list)
	if err != nil {
		b.Fatal(err)
	}
	pb, err := list.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	decode := func(data []byte, into func() any) func(*testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if err := kjson.UnmarshalCaseSensitivePreserveInts(data, into()); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.Run("core-json", decode(js, func() any { return &core.PodList{} }))
	b.Run("corev1-json", decode(js, func() any { return &corev1.PodList{} }))
	b.Run("corev1-protobuf", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(pb)))
		for b.Loop() {
			if err := (&corev1.PodList{}).Unmarshal(pb); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// heapOf measures the live heap that start adds once it returns.
func heapOf(b testing.TB, objs []k8sruntime.Object, start func(context.Context, *fakeClients) func()) float64 {
	fc := newFakeClients(b, objs...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := liveHeap()
	keep := start(ctx, &fc)
	after := liveHeap()
	keep()
	runtime.KeepAlive(fc)
	return float64(after) - float64(before)
}

func liveHeap() uint64 {
	var m runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// memObjects are memPods realistic pods spread over memNamespaces namespaces.
func memObjects() []k8sruntime.Object {
	var objs []k8sruntime.Object
	for i := range memNamespaces {
		objs = append(objs, namespace(fmt.Sprintf("team-%03d", i),
			map[string]string{
				"kubernetes.io/metadata.name": fmt.Sprintf("team-%03d", i), "team": fmt.Sprintf("t%d", i%17),
				"environment": "production", "istio-injection": "enabled",
			},
			map[string]string{"scheduler.alpha.kubernetes.io/node-selector": "pool=general", "owner": "platform@example.com"}))
	}
	for i := range memPods {
		objs = append(objs, realisticPod(fmt.Sprintf("team-%03d", i%memNamespaces), fmt.Sprintf("svc-%d-7d4b9c6f8-x%04d", i%40, i)))
	}
	return objs
}

func fnv32(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

// realisticPod is a Deployment's pod as an apiserver returns it: managed fields, the
// last-applied annotation, env, probes, mounts, a projected token volume, statuses.
func realisticPod(ns, name string) *corev1.Pod {
	uid := types.UID(fmt.Sprintf("%08x-1111-2222-3333-444455556666", fnv32(ns+"/"+name)))
	app := name[:strings.LastIndexByte(name, '-')]
	env := make([]corev1.EnvVar, 15)
	for i := range env {
		env[i] = corev1.EnvVar{Name: fmt.Sprintf("SETTING_NUMBER_%d", i), Value: fmt.Sprintf("value-of-setting-%d-for-%s", i, app)}
	}
	mounts := []corev1.VolumeMount{{Name: "config", MountPath: "/etc/app"}, {Name: "data", MountPath: "/var/lib/app"},
		{Name: "kube-api-access-abcde", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}}
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
		PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3}
	res := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
	ctr := func(n, image string) corev1.Container {
		return corev1.Container{Name: n, Image: image, Env: env, VolumeMounts: mounts, Resources: res,
			LivenessProbe: probe, ReadinessProbe: probe, Args: []string{"--config=/etc/app/config.yaml", "--log-format=json"},
			Ports:                  []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
			TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			ImagePullPolicy: corev1.PullIfNotPresent}
	}
	initCtr := ctr("migrate", "registry.example.com/"+app+"/migrate:1.4.2")
	initCtr.LivenessProbe, initCtr.ReadinessProbe, initCtr.Ports = nil, nil, nil // as the API wants
	proxy := ctr("proxy", "envoyproxy/envoy:v1.30.1")
	proxy.Ports = []corev1.ContainerPort{{Name: "admin", ContainerPort: 9901, Protocol: corev1.ProtocolTCP}}
	started := metav1.NewTime(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC))
	status := func(n, image string, init bool) corev1.ContainerStatus {
		st := corev1.ContainerStatus{Name: n, Image: image, ImageID: image + "@sha256:" + strings.Repeat("ab", 32),
			ContainerID: "containerd://" + containerID(uid, n, 0), Ready: !init, Started: new(true)}
		if init {
			st.State.Terminated = &corev1.ContainerStateTerminated{Reason: "Completed", StartedAt: started, FinishedAt: started}
		} else {
			st.State.Running = &corev1.ContainerStateRunning{StartedAt: started}
		}
		return st
	}
	fieldsJSON := `{"f:metadata":{"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{}},"f:ownerReferences":{}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:env":{},"f:image":{},"f:livenessProbe":{},"f:ports":{},"f:readinessProbe":{},"f:resources":{},"f:volumeMounts":{}}}}}`
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns, UID: uid, ResourceVersion: "123456", GenerateName: app + "-",
			CreationTimestamp: started,
			Labels: map[string]string{"app": app, "app.kubernetes.io/name": app, "app.kubernetes.io/instance": app + "-prod",
				"app.kubernetes.io/version": "1.4.2", "app.kubernetes.io/component": "server", "pod-template-hash": "7d4b9c6f8"},
			Annotations: map[string]string{
				"kubectl.kubernetes.io/restartedAt": "2024-01-02T03:04:05Z", "prometheus.io/scrape": "true", "prometheus.io/port": "9090",
				"checksum/config": strings.Repeat("0f", 32), "team": "shop",
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app, UID: "rs-uid", Controller: new(true)}},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &started,
					FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(fieldsJSON)}},
				{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &started,
					FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(strings.ReplaceAll(fieldsJSON, "spec", "status"))}, Subresource: "status"},
			},
		},
		Spec: corev1.PodSpec{
			NodeName:       testNode,
			InitContainers: []corev1.Container{initCtr},
			Containers:     []corev1.Container{ctr("app", "registry.example.com/"+app+":1.4.2"), proxy},
			Volumes: []corev1.Volume{
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: app + "-config"}}}},
				{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "kube-api-access-abcde", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: new(int64(3607))}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				}}}},
			},
			Tolerations: []corev1.Toleration{
				{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: new(int64(300))},
				{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: new(int64(300))},
			},
			ServiceAccountName: "default", SchedulerName: "default-scheduler", DNSPolicy: corev1.DNSClusterFirst,
			RestartPolicy: corev1.RestartPolicyAlways, TerminationGracePeriodSeconds: new(int64(30)),
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.244.3.17", HostIP: "192.168.10.4", QOSClass: corev1.PodQOSBurstable, StartTime: &started,
			PodIPs: []corev1.PodIP{{IP: "10.244.3.17"}}, HostIPs: []corev1.HostIP{{IP: "192.168.10.4"}},
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: started},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: started},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: started},
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: started},
			},
			InitContainerStatuses: []corev1.ContainerStatus{status("migrate", "registry.example.com/"+app+"/migrate:1.4.2", true)},
			ContainerStatuses: []corev1.ContainerStatus{
				status("app", "registry.example.com/"+app+":1.4.2", false), status("proxy", "envoyproxy/envoy:v1.30.1", false),
			},
		},
	}
}
