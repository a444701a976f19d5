package kube

import (
	"testing"

	"github.com/skiff-logs/skiff/agent/event"
)

func TestDescribe(t *testing.T) {
	id := "4f3c9e1b0a2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6"
	tests := []struct {
		path string
		want event.Source
	}{
		{
			"/var/log/containers/web-7d9f_shop_nginx-" + id + ".log",
			event.Source{Tag: "kube.shop.web-7d9f.nginx", Namespace: "shop", PodName: "web-7d9f", Container: "nginx", ContainerID: id},
		},
		{
			"/var/log/containers/my.pod_ns_side-car-" + id + ".log",
			event.Source{Tag: "kube.ns.my.pod.side-car", Namespace: "ns", PodName: "my.pod", Container: "side-car", ContainerID: id},
		},
		{
			"/var/log/pods/shop_web-7d9f_0b6d1c3e-1111-2222-3333-444455556666/nginx/0.log",
			event.Source{Tag: "kube.shop.web-7d9f.nginx", Namespace: "shop", PodName: "web-7d9f", PodUID: "0b6d1c3e-1111-2222-3333-444455556666", Container: "nginx"},
		},
		{
			"/var/log/pods/shop_web_uid/init-db/3.log.20240102-030405",
			event.Source{Tag: "kube.shop.web.init-db", Namespace: "shop", PodName: "web", PodUID: "uid", Container: "init-db"},
		},
		{"/var/log/syslog", event.Source{Tag: UnknownTag}},
		{"/var/log/containers/nounderscore.log", event.Source{Tag: UnknownTag}},
		{"/var/log/containers/a_b_noid.log", event.Source{Tag: UnknownTag}},
		{"/var/log/pods/a_b_c/ctr/notanumber.log", event.Source{Tag: UnknownTag}},
	}
	for _, tt := range tests {
		got := Describe(tt.path)
		tt.want.Path = tt.path
		if got != tt.want {
			t.Errorf("Describe(%q)\n got %+v\nwant %+v", tt.path, got, tt.want)
		}
	}
}
