// Package charttest holds the tests of the Helm chart in charts/skiff: rendering with the Helm Go
// SDK against golden files, helm lint, skiff's own validation of the rendered configuration, the
// security context and RBAC rules, the Kibana assets, the audit webhook's Deployment, Service and
// apiserver kubeconfig (down to an EventList posted by a client-go client made from the rendered
// kubeconfig to skiff run with the rendered configuration), and server-side apply of every
// rendered object to a real kube-apiserver. It has no non-test code beyond this comment.
package charttest
