// Package bench holds the "lowkey bench" measurements: each compares the
// project's path with a baseline measured in the same run (a raw pion data
// channel, rod driven directly, plain fork/exec) or reports load, fault
// and soak figures, so the machine's drift cancels out.
package bench
