// Package charttest holds the tests of the Helm chart in charts/skiff: rendering with the Helm Go
// SDK against golden files, helm lint, skiff's own validation of the rendered configuration, the
// security context and RBAC rules, the Kibana assets, and server-side apply of every rendered
// object to a real kube-apiserver. It has no non-test code beyond this comment.
package charttest
