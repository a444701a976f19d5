package agent_test

import (
	"os"
	"testing"

	"github.com/skiff-logs/skiff/internal/kubetest"
)

// TestMain stops the kube-apiserver the tests may have started.
func TestMain(m *testing.M) {
	code := m.Run()
	kubetest.Stop()
	os.Exit(code)
}
