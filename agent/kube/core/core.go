// Package core is a Kubernetes client of the core/v1 API group alone. skiff needs nothing else
// from the apiserver (pods through this client, namespaces' metadata through client-go's
// metadata client), and client-go's clientset would link and register all of Kubernetes' ~56 API
// groups at start: that costs ~10 MiB of binary and ~20 MiB of resident pages on every node
// before the first line is read.
package core

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// Client is a core/v1 client. Requests use protobuf (less CPU to decode than JSON). A Client is
// safe for concurrent use.
type Client struct {
	rest   *rest.RESTClient
	params runtime.ParameterCodec
}

// coreScheme knows core/v1 and the meta/v1 types its requests and answers use (ListOptions,
// Status, WatchEvent, ...), and nothing else.
var coreScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil { // registers meta/v1 in core/v1 as well
		panic(fmt.Sprintf("kube/core: core/v1 scheme: %v", err))
	}
	return s
}()

// New makes a Client from rc (which is not modified).
func New(rc *rest.Config) (*Client, error) {
	rc = rest.CopyConfig(rc)
	rc.APIPath = "/api"
	rc.GroupVersion = &corev1.SchemeGroupVersion
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	rc.NegotiatedSerializer = serializer.NewCodecFactory(coreScheme).WithoutConversion()
	client, err := rest.RESTClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes core/v1 client: %w", err)
	}
	return &Client{rest: client, params: runtime.NewParameterCodec(coreScheme)}, nil
}

// Pods is the pods of namespace ns ("" for all), for listing and watching.
func (c *Client) Pods(ns string) Pods { return corePods{c, ns} }

// Pods lists and watches pods: what skiff's enricher needs from the apiserver for pods. Client's
// Pods and client-go's typed PodInterface both satisfy it.
type Pods interface {
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

type corePods struct {
	c  *Client
	ns string
}

func (p corePods) List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	list := &corev1.PodList{}
	err := p.c.in(p.c.rest.Get(), p.ns).Resource("pods").VersionedParams(&opts, p.c.params).
		Timeout(timeoutOf(opts)).Do(ctx).Into(list)
	return list, err
}

func (p corePods) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return p.c.in(p.c.rest.Get(), p.ns).Resource("pods").VersionedParams(&opts, p.c.params).
		Timeout(timeoutOf(opts)).Watch(ctx)
}

func timeoutOf(opts metav1.ListOptions) time.Duration {
	if opts.TimeoutSeconds == nil {
		return 0
	}
	return time.Duration(*opts.TimeoutSeconds) * time.Second
}

// Create creates obj as resource (e.g. "pods") in namespace ns ("" for cluster-scoped
// resources) and decodes what the apiserver stored into into.
func (c *Client) Create(ctx context.Context, resource, ns string, obj, into runtime.Object) error {
	return c.in(c.rest.Post(), ns).Resource(resource).
		VersionedParams(&metav1.CreateOptions{}, c.params).Body(obj).Do(ctx).Into(into)
}

// Get reads resource ns/name into into.
func (c *Client) Get(ctx context.Context, resource, ns, name string, into runtime.Object) error {
	return c.in(c.rest.Get(), ns).Resource(resource).Name(name).Do(ctx).Into(into)
}

// Update replaces resource ns/name (its subresource, e.g. "status", unless "") by obj, whose
// resourceVersion the apiserver checks, and decodes the result into into.
func (c *Client) Update(ctx context.Context, resource, ns, name, subresource string, obj, into runtime.Object) error {
	r := c.in(c.rest.Put(), ns).Resource(resource).Name(name)
	if subresource != "" {
		r = r.SubResource(subresource)
	}
	return r.VersionedParams(&metav1.UpdateOptions{}, c.params).Body(obj).Do(ctx).Into(into)
}

// Delete deletes resource ns/name with opts.
func (c *Client) Delete(ctx context.Context, resource, ns, name string, opts metav1.DeleteOptions) error {
	return c.in(c.rest.Delete(), ns).Resource(resource).Name(name).Body(&opts).Do(ctx).Error()
}

// in scopes r to namespace ns; "" leaves it cluster-scoped (the client refuses an empty
// namespace on creations and named requests).
func (c *Client) in(r *rest.Request, ns string) *rest.Request {
	if ns == "" {
		return r
	}
	return r.Namespace(ns)
}
