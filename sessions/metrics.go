package sessions

import "github.com/prometheus/client_golang/prometheus"

// Metrics count how the runtime's work ends; the box registers them.
type Metrics struct {
	TurnsEnded *prometheus.CounterVec // by state: done, failed, cancelled, out_of_memory
	JobsEnded  *prometheus.CounterVec // by status: exited, stopped, failed
	OOMKills   prometheus.Counter     // processes the kernel killed for a session's budget
}

// NewMetrics makes the runtime's counters, unregistered.
func NewMetrics() *Metrics {
	return &Metrics{
		TurnsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lowkey_turns_ended_total", Help: "Turns that ended, by how they ended."}, []string{"state"}),
		JobsEnded:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lowkey_jobs_ended_total", Help: "Jobs that ended, by how they ended."}, []string{"status"}),
		OOMKills:   prometheus.NewCounter(prometheus.CounterOpts{Name: "lowkey_oom_kills_total", Help: "Processes of turns and jobs the kernel killed for exceeding their session's memory budget."}),
	}
}

// Collectors are the counters, to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.TurnsEnded, m.JobsEnded, m.OOMKills}
}
