package main

import (
	"fmt"

	"github.com/spf13/pflag"
	utilcompatibility "k8s.io/apiserver/pkg/util/compatibility"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	basecompatibility "k8s.io/component-base/compatibility"
)

// componentRegistry gives one component (apiserver, controller manager, scheduler) a version
// and feature-gate registry of its own, as each would have as a process of its own: three
// components in one process must not parse their flags into one global registry. The feature
// gates start as a copy of the defaults of this build.
func componentRegistry() (basecompatibility.ComponentGlobalsRegistry, error) {
	registry := basecompatibility.NewComponentGlobalsRegistry()
	err := registry.Register(basecompatibility.DefaultKubeComponent,
		utilcompatibility.DefaultBuildEffectiveVersion(), utilfeature.DefaultMutableFeatureGate.DeepCopy())
	return registry, err
}

// parseFlags parses args into the flag sets of one component, as its command line would.
func parseFlags(component string, sets map[string]*pflag.FlagSet, args []string) error {
	fs := pflag.NewFlagSet(component, pflag.ContinueOnError)
	for _, set := range sets {
		fs.AddFlagSet(set)
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s flags: %w", component, err)
	}
	return nil
}
