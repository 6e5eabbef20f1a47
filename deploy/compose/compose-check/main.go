// kizuna-compose-check validates a compose file the way `docker compose config` does, without a
// Docker engine or the compose CLI plugin: it loads the project with compose-go (the loader of
// docker compose itself: interpolation, the compose-spec JSON schema, normalisation and
// consistency checks such as depends_on targets), then checks that build contexts,
// Dockerfiles and bind-mount sources exist, and that the loader logged no warning. It writes
// the normalised project (what `docker compose config` prints) to the output file.
//
// Usage: kizuna-compose-check COMPOSE_FILE PROFILES OUTPUT   (PROFILES: comma separated, or "")
//
// Built and run by deploy/validate.sh (the tools live outside the repository).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/sirupsen/logrus"
)

type warnings struct{ msgs []string }

func (w *warnings) Levels() []logrus.Level {
	return []logrus.Level{logrus.WarnLevel, logrus.ErrorLevel}
}

func (w *warnings) Fire(e *logrus.Entry) error {
	w.msgs = append(w.msgs, e.Message)
	return nil
}

func version() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, d := range info.Deps {
			if d.Path == "github.com/compose-spec/compose-go/v2" {
				return d.Version
			}
		}
	}
	return "unknown"
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Println("compose-go " + version())
		return
	}
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: kizuna-compose-check COMPOSE_FILE PROFILES OUTPUT")
		os.Exit(2)
	}
	file, out := os.Args[1], os.Args[3]
	var profiles []string
	if os.Args[2] != "" {
		profiles = strings.Split(os.Args[2], ",")
	}
	w := &warnings{}
	logrus.AddHook(w)

	opts, err := cli.NewProjectOptions([]string{file},
		cli.WithWorkingDirectory(filepath.Dir(file)),
		cli.WithOsEnv,
		cli.WithDotEnv,
		cli.WithProfiles(profiles),
		cli.WithResolvedPaths(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		fail("options: %v", err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fail("%v", err)
	}
	if err := project.CheckContainerNameUnicity(); err != nil {
		fail("%v", err)
	}

	var problems []string
	exists := func(what, path string) {
		if _, err := os.Stat(path); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s does not exist", what, path))
		}
	}
	names := make([]string, 0, len(project.Services))
	for name, s := range project.Services {
		names = append(names, name)
		if s.Build != nil {
			exists(name+": build context", s.Build.Context)
			df := s.Build.Dockerfile
			if !filepath.IsAbs(df) {
				df = filepath.Join(s.Build.Context, df)
			}
			exists(name+": Dockerfile", df)
		}
		for _, v := range s.Volumes {
			if v.Type == "bind" {
				exists(name+": bind mount source", v.Source)
			}
		}
		if s.Image == "" && s.Build == nil {
			problems = append(problems, name+": neither image nor build")
		}
	}
	sort.Strings(names)
	disabled := make([]string, 0, len(project.DisabledServices))
	for name := range project.DisabledServices {
		disabled = append(disabled, name)
	}
	sort.Strings(disabled)

	yaml, err := project.MarshalYAML()
	if err != nil {
		fail("marshal: %v", err)
	}
	if err := os.WriteFile(out, yaml, 0o644); err != nil {
		fail("%v", err)
	}
	for _, m := range w.msgs {
		problems = append(problems, "loader warning: "+m)
	}
	fmt.Printf("project %q: %d services enabled (%s)", project.Name, len(names), strings.Join(names, ", "))
	if len(disabled) > 0 {
		fmt.Printf("; disabled by profile: %s", strings.Join(disabled, ", "))
	}
	fmt.Printf("; %d volumes\n", len(project.Volumes))
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, "  "+p)
		}
		os.Exit(1)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "  "+format+"\n", args...)
	os.Exit(1)
}
