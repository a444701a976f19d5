package config

import (
	"fmt"
	"path/filepath"
	"strings"
)

func checkGlob(p string) error {
	if p == "" {
		return fmt.Errorf("empty glob")
	}
	if strings.Contains(p, "**") {
		return fmt.Errorf("** is not supported in file globs: %q", p)
	}
	if _, err := filepath.Match(p, ""); err != nil {
		return fmt.Errorf("bad glob %q: %v", p, err)
	}
	return nil
}
