// Package image checks the container image's recipe where no container engine runs: the
// Dockerfile's build stage runs the same command as `make build`, that command works and yields
// a static binary, and the image's user and command agree with the Helm chart.
package image

import (
	"debug/buildinfo"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const root = "../.."

// dockerfile is what the tests need from the Dockerfile.
type dockerfile struct {
	buildRun   string // the build stage's RUN command that runs go build
	versionArg string // the default of ARG VERSION
	user       string // the final stage's USER
	cmd        []string
	finalFrom  string
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var d dockerfile
	stage := 0
	for _, line := range strings.Split(string(raw), "\n") {
		instr, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			stage++
			d.finalFrom = rest
		case "ARG":
			if v, ok := strings.CutPrefix(rest, "VERSION="); ok && stage == 1 {
				d.versionArg = v
			}
		case "RUN":
			if stage == 1 && strings.Contains(rest, "go build") {
				d.buildRun = rest
			}
		case "USER":
			d.user = rest
		case "CMD":
			if err := yaml.Unmarshal([]byte(rest), &d.cmd); err != nil {
				t.Fatalf("CMD is not an exec-form JSON array: %v", err)
			}
		}
	}
	if stage != 2 || d.buildRun == "" || d.user == "" || d.cmd == nil {
		t.Fatalf("Dockerfile: want a build stage with RUN … go build, a final stage with USER and CMD; got %+v", d)
	}
	return d
}

// words splits a shell command line on blanks, keeping double-quoted strings whole (the subset of
// shell syntax both recipes use).
func words(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, inWord = !inQuote, true
		case (r == ' ' || r == '\t') && !inQuote:
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
			}
			inWord = false
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// withoutOutput drops "-o PATH" so that two build commands can be compared.
func withoutOutput(w []string) []string {
	var out []string
	for i := 0; i < len(w); i++ {
		if w[i] == "-o" {
			i++
			continue
		}
		out = append(out, w[i])
	}
	return out
}

// TestBuildCommandMatchesMake: the Dockerfile's go build is `make build`'s, word for word apart
// from the output path (make -n prints make's with its variables expanded).
func TestBuildCommandMatchesMake(t *testing.T) {
	d := readDockerfile(t)
	out, err := exec.Command("make", "-s", "-n", "-C", root, "build", "VERSION=v9.9.9-test", "GO=go").Output()
	if err != nil {
		t.Fatalf("make -n build: %v", err)
	}
	var makeCmd string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, " build ") {
			makeCmd = l
		}
	}
	docker := withoutOutput(words(strings.ReplaceAll(d.buildRun, "${VERSION}", "v9.9.9-test")))
	mk := withoutOutput(words(makeCmd))
	if !slices.Equal(docker, mk) {
		t.Errorf("Dockerfile and make build differ:\n  Dockerfile: %q\n  make:       %q", docker, mk)
	}
	if !slices.Contains(docker, "CGO_ENABLED=0") || !slices.Contains(docker, "-trimpath") {
		t.Errorf("build command %q: want CGO_ENABLED=0 and -trimpath", docker)
	}
}

// TestBuildStageMakesStaticBinary runs the build stage's command as the image builder would
// (sh -c, from the source root, VERSION from the ARG default) and checks the result: a statically
// linked ELF executable (no program interpreter, no shared libraries), built with cgo off and
// -trimpath, that runs.
func TestBuildStageMakesStaticBinary(t *testing.T) {
	d := readDockerfile(t)
	bin := filepath.Join(t.TempDir(), "skiff")
	script := strings.ReplaceAll(d.buildRun, "/out/skiff", bin)
	if script == d.buildRun {
		t.Fatalf("build command %q does not write /out/skiff, which the final stage copies", d.buildRun)
	}
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "VERSION="+d.versionArg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("binary has a PT_INTERP program header: it is dynamically linked")
		}
		if p.Type == elf.PT_DYNAMIC {
			t.Error("binary has a PT_DYNAMIC segment")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) != 0 {
		t.Errorf("binary needs shared libraries %v (%v)", libs, err)
	}
	if f.Type != elf.ET_EXEC {
		t.Errorf("ELF type %v, want a static ET_EXEC", f.Type)
	}

	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("build settings CGO_ENABLED=%q -trimpath=%q, want 0 and true", settings["CGO_ENABLED"], settings["-trimpath"])
	}

	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "skiff "+d.versionArg {
		t.Errorf("skiff version: %q, %v; want \"skiff %s\"", out, err, d.versionArg)
	}
}

// TestImageMatchesChart: the image's user is the chart's runAsUser:runAsGroup, and its default
// command reads the configuration where the chart mounts it.
func TestImageMatchesChart(t *testing.T) {
	d := readDockerfile(t)
	raw, err := os.ReadFile(filepath.Join(root, "charts/skiff/values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var vals struct {
		SecurityContext struct {
			RunAsUser  *int64 `json:"runAsUser"`
			RunAsGroup *int64 `json:"runAsGroup"`
		} `json:"securityContext"`
	}
	if err := yaml.Unmarshal(raw, &vals); err != nil {
		t.Fatal(err)
	}
	sc := vals.SecurityContext
	if sc.RunAsUser == nil || sc.RunAsGroup == nil {
		t.Fatal("chart values set no securityContext.runAsUser/runAsGroup")
	}
	if want := strconv.FormatInt(*sc.RunAsUser, 10) + ":" + strconv.FormatInt(*sc.RunAsGroup, 10); d.user != want {
		t.Errorf("Dockerfile USER %s, chart runs as %s", d.user, want)
	}
	if strings.Contains(d.finalFrom, ":nonroot") && *sc.RunAsUser == 0 {
		t.Errorf("final stage %s is a nonroot base, the chart runs as root", d.finalFrom)
	}

	tpl, err := os.ReadFile(filepath.Join(root, "charts/skiff/templates/daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*args: (\[.*\])$`).FindSubmatch(tpl)
	if m == nil {
		t.Fatal("daemonset.yaml has no one-line args: [...]")
	}
	var args []string
	if err := yaml.Unmarshal(m[1], &args); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(args, d.cmd) {
		t.Errorf("Dockerfile CMD %q, chart args %q", d.cmd, args)
	}
}
