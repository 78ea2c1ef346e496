// Package cgroup gives each session a memory budget: one control group
// per session with a memory limit (swap included, so there is no escape
// into swap) and a pids limit, one leaf group for the turn and one per
// job inside it. It speaks cgroup v1 and v2, detected at start, through
// containerd/cgroups, and starts processes inside their group so no child
// forked in between can escape.
//
// Where groups cannot be made (no root, no delegation) it says why, and
// processes run without a budget.
package cgroup
