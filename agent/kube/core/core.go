// Package core is a Kubernetes client of the core/v1 API group alone. skiff needs nothing else
// from the apiserver (pods through this client, namespaces' metadata through client-go's
// metadata client), and client-go's clientset would link and register all of Kubernetes' ~56 API
// groups at start: that costs ~10 MiB of binary and ~20 MiB of resident pages on every node
// before the first line is read.
//
// Nor does it link k8s.io/api: pods decode into this package's own slim read-only types (Pod,
// PodList), and objects it creates or patches are sent as JSON made from any value, so that
// callers build them as they please.
package core

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// Client is a core/v1 client. Requests and answers are JSON (Pod has no protobuf code; decoding
// JSON skips the fields Pod lacks). A Client is safe for concurrent use.
type Client struct {
	rest   *rest.RESTClient
	params runtime.ParameterCodec
}

// coreScheme knows Pod and PodList as core/v1's kinds Pod and PodList, and the meta/v1 types
// requests and answers use (ListOptions, Status, WatchEvent, ...), and nothing else. Objects of
// other types (a caller's into) are decoded by plain JSON unmarshalling.
var coreScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	s.AddKnownTypes(SchemeGroupVersion, &Pod{}, &PodList{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return s
}()

// New makes a Client from rc (which is not modified).
func New(rc *rest.Config) (*Client, error) {
	rc = rest.CopyConfig(rc)
	rc.APIPath = "/api"
	rc.GroupVersion = &SchemeGroupVersion
	rc.ContentType = "application/json"
	rc.AcceptContentTypes = "application/json"
	rc.NegotiatedSerializer = serializer.NewCodecFactory(coreScheme).WithoutConversion()
	client, err := rest.RESTClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes core/v1 client: %w", err)
	}
	return &Client{rest: client, params: runtime.NewParameterCodec(coreScheme)}, nil
}

// Pods is the pods of namespace ns ("" for all), for listing and watching.
func (c *Client) Pods(ns string) Pods { return corePods{c, ns} }

// Pods lists and watches pods: what skiff's enricher needs from the apiserver for pods. Watch
// events carry *Pod objects (and *metav1.Status for errors).
type Pods interface {
	List(ctx context.Context, opts metav1.ListOptions) (*PodList, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

type corePods struct {
	c  *Client
	ns string
}

func (p corePods) List(ctx context.Context, opts metav1.ListOptions) (*PodList, error) {
	list := &PodList{}
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

// Create creates resource (e.g. "pods") in namespace ns ("" for cluster-scoped resources) from
// body, sent as JSON: a []byte as it is, anything else marshalled with encoding/json (a
// k8s.io/api object, a map, a struct of the caller's). Kind and apiVersion may be left out. What
// the apiserver stored is decoded into into, unless it is nil.
func (c *Client) Create(ctx context.Context, resource, ns string, body any, into runtime.Object) error {
	b, err := jsonBody(body)
	if err != nil {
		return err
	}
	return decode(c.in(c.rest.Post(), ns).Resource(resource).
		VersionedParams(&metav1.CreateOptions{}, c.params).Body(b).Do(ctx), into)
}

// Get reads resource ns/name into into: a *Pod, or a value of any type that JSON unmarshals.
func (c *Client) Get(ctx context.Context, resource, ns, name string, into runtime.Object) error {
	return decode(c.in(c.rest.Get(), ns).Resource(resource).Name(name).Do(ctx), into)
}

// Patch applies the JSON merge patch (RFC 7386) patch, sent as Create sends its body, to
// resource ns/name (its subresource, e.g. "status", unless "") and decodes the result into into
// unless it is nil. A patch setting metadata.resourceVersion fails with a Conflict error unless
// that is the object's current version.
func (c *Client) Patch(ctx context.Context, resource, ns, name, subresource string, patch any, into runtime.Object) error {
	b, err := jsonBody(patch)
	if err != nil {
		return err
	}
	r := c.in(c.rest.Patch(types.MergePatchType), ns).Resource(resource).Name(name)
	if subresource != "" {
		r = r.SubResource(subresource)
	}
	return decode(r.VersionedParams(&metav1.PatchOptions{}, c.params).Body(b).Do(ctx), into)
}

func jsonBody(body any) ([]byte, error) {
	if b, ok := body.([]byte); ok {
		return b, nil
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode request body: %w", err)
	}
	return b, nil
}

func decode(r rest.Result, into runtime.Object) error {
	if into == nil {
		return r.Error()
	}
	return r.Into(into)
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
