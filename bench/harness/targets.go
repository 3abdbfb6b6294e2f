package main

import (
	"fmt"
	"os"
	"text/tabwriter"
)

// A target is one of the figures the README promises to measure, with
// what it is compared against in the same run.
type target struct {
	name     string
	goal     string
	measured string
	met      bool
}

var targets []target

func addTarget(name, goal, measured string, met bool) {
	targets = append(targets, target{name, goal, measured, met})
}

// ratioTarget records r/base against a goal ratio.
func ratioTarget(name string, r, base, goal float64, against string) {
	q := r / base
	addTarget(name, fmt.Sprintf("≥ %.2f× %s", goal, against), fmt.Sprintf("%.2f× (%.0f vs %.0f/s)", q, r, base), q >= goal)
}

func printTargets() {
	if len(targets) == 0 {
		return
	}
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "| target\t| goal\t| measured\t| \t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|")
	for _, t := range targets {
		verdict := "**missed**"
		if t.met {
			verdict = "met"
		}
		fmt.Fprintf(tw, "| %s\t| %s\t| %s\t| %s\t|\n", t.name, t.goal, t.measured, verdict)
	}
	tw.Flush()
}
