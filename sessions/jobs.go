package sessions

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lowkeyhq/lowkey/sessions/cgroup"
	"github.com/lowkeyhq/lowkey/sessions/sandbox"
)

// Job is a shell command an agent started: a run card.
type Job struct {
	ID         string    `json:"id"`
	Session    string    `json:"session"`
	Turn       string    `json:"turn,omitempty"`
	Command    string    `json:"command"`
	Cwd        string    `json:"cwd"`
	Status     string    `json:"status"` // running, exited, stopped, failed
	ExitCode   *int      `json:"exit_code,omitempty"`
	Signal     string    `json:"signal,omitempty"`
	Started    time.Time `json:"started"`
	Ended      time.Time `json:"ended,omitzero"`
	ElapsedMS  int64     `json:"elapsed_ms"`
	StdoutTail string    `json:"stdout_tail"`
	StderrTail string    `json:"stderr_tail"`
	Preview    string    `json:"preview,omitempty"`
}

type runningJob struct {
	mu      sync.Mutex
	j       Job
	group   cgroup.Group
	stopped bool
	done    chan struct{}
	out     tail
	errOut  tail
}

// tail keeps the last bytes of a stream.
type tail struct{ b []byte }

const tailMax = 4 << 10

func (t *tail) add(line string) {
	t.b = append(t.b, line...)
	t.b = append(t.b, '\n')
	if len(t.b) > tailMax {
		t.b = t.b[len(t.b)-tailMax:]
	}
}

func (r *Runtime) saveJob(j Job) {
	m := r.cfg.Mask
	j.Command, j.StdoutTail, j.StderrTail = m.String(j.Command), m.String(j.StdoutTail), m.String(j.StderrTail)
	if err := r.cfg.Store.Put("job/"+j.Session+"/"+j.ID, j); err != nil {
		r.log.Error("could not save a job's card", "session", j.Session, "job", j.ID, "err", err)
	}
}

// Jobs lists a session's jobs, oldest first.
func (r *Runtime) Jobs(id string) []Job {
	return listStored(r, "job", id, func(j Job) time.Time { return j.Started })
}

// RunJob starts a shell command as a job in its own group inside the
// session's. With wait, it returns when the job ends or wait passes.
func (r *Runtime) RunJob(ctx context.Context, id, command, cwd string, wait time.Duration) (Job, error) {
	ls, err := r.session(id)
	if err != nil {
		return Job{}, err
	}
	if strings.TrimSpace(command) == "" {
		return Job{}, errors.New("shell.run needs a command")
	}
	group, err := r.groupOf(ls)
	if err != nil {
		return Job{}, err
	}
	work := r.workDir(id)
	if cwd == "" {
		cwd = work
	} else if !filepath.IsAbs(cwd) {
		cwd = filepath.Join(work, cwd)
	}
	_, turn := r.turnContext(id)
	rj := &runningJob{j: Job{ID: "j-" + randomID(), Session: id, Turn: turn, Command: command, Cwd: cwd, Status: "running", Started: time.Now().UTC()}, done: make(chan struct{})}
	if rj.group, err = group.Child("job-" + rj.j.ID); err != nil {
		return Job{}, fmt.Errorf("job group: %w", err)
	}
	// A job has a token of its own, for as long as it runs: the turn
	// that started it may end first.
	token := r.mintToken(id)
	creds, err := credentials(token, nil)
	if err != nil {
		r.dropToken(token)
		return Job{}, err
	}
	w, err := r.cfg.Boundary.Command(sandbox.Spec{
		Argv: []string{"/bin/sh", "-c", command}, Dir: cwd, Credentials: creds, CredentialsDir: r.cfg.SecretDir,
		Env: r.workerEnv(work, "LOWKEY_SESSION="+id, "LOWKEY_MCP_URL="+r.cfg.MCPURL),
	}, rj.group)
	if err != nil {
		r.dropToken(token)
		return Job{}, err
	}
	_, stdout, stderr, err := w.Pipes(false)
	if err != nil {
		r.dropToken(token)
		w.Release()
		return Job{}, err
	}
	cmd := w.Cmd
	if err := w.Start(); err != nil {
		r.dropToken(token)
		_ = rj.group.Delete()
		return Job{}, fmt.Errorf("could not start the job: %w", err)
	}
	ls.mu.Lock()
	ls.jobs[rj.j.ID] = rj
	ls.mu.Unlock()
	r.saveJob(rj.j)
	ls.events.emit("job.started", rj.j.Turn, rj.j.ID, rj.j)
	var wg sync.WaitGroup
	budget := outputBudget{spill: spillTo(work, "job-"+rj.j.ID+".log", r.cfg.Boundary.Own)}
	read := func(stream string, rd io.Reader, t *tail) {
		defer wg.Done()
		readLines(rd, func(line string, cut bool) {
			if cut {
				line += fmt.Sprintf(" … (line cut at %d KiB)", maxLine>>10)
			}
			rj.mu.Lock()
			t.add(line)
			kept := budget.take(line)
			rj.mu.Unlock()
			if kept {
				ls.events.emit("job.output", rj.j.Turn, rj.j.ID, map[string]string{"stream": stream, "text": line})
			}
		})
	}
	wg.Add(2)
	go read("stdout", stdout, &rj.out)
	go read("stderr", stderr, &rj.errOut)
	stopWatch := make(chan struct{})
	go r.watchPreview(ls, rj, stopWatch)
	go func() {
		wg.Wait()
		if err := budget.close(); err != nil {
			r.log.Warn("the job's output log could not be written in full", "session", id, "job", rj.j.ID, "err", err)
		}
		if budget.dropped > 0 {
			ls.events.emit("job.output", rj.j.Turn, rj.j.ID, map[string]string{"stream": "stderr", "text": budget.note()})
		}
		w.Release()
		werr := cmd.Wait()
		r.dropToken(token)
		close(stopWatch)
		// Whatever the command left behind goes with it.
		_ = rj.group.Kill()
		if n := rj.group.OOMKills(); n > 0 {
			r.cfg.Metrics.OOMKills.Add(float64(n))
		}
		_ = rj.group.Delete()
		rj.mu.Lock()
		j := &rj.j
		j.Ended = time.Now().UTC()
		j.ElapsedMS = j.Ended.Sub(j.Started).Milliseconds()
		j.StdoutTail, j.StderrTail = string(rj.out.b), string(rj.errOut.b)
		var exit *exec.ExitError
		switch {
		case rj.stopped:
			j.Status = "stopped"
		case werr == nil:
			j.Status = "exited"
		case errors.As(werr, &exit):
			j.Status = "exited"
		default:
			j.Status = "failed"
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			j.Signal = ws.Signal().String()
		} else {
			code := cmd.ProcessState.ExitCode()
			j.ExitCode = &code
		}
		card := *j
		rj.mu.Unlock()
		ls.mu.Lock()
		delete(ls.jobs, card.ID)
		ls.mu.Unlock()
		r.saveJob(card)
		r.cfg.Metrics.JobsEnded.WithLabelValues(card.Status).Inc()
		ls.events.emit("job.state", card.Turn, card.ID, card)
		close(rj.done)
	}()
	if wait > 0 {
		select {
		case <-rj.done:
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
	return rj.snapshot(), nil
}

func (rj *runningJob) snapshot() Job {
	rj.mu.Lock()
	defer rj.mu.Unlock()
	j := rj.j
	if j.Ended.IsZero() {
		j.ElapsedMS = time.Since(j.Started).Milliseconds()
		j.StdoutTail, j.StderrTail = string(rj.out.b), string(rj.errOut.b)
	}
	return j
}

// StopJob stops one job and everything it started; the turn goes on.
func (r *Runtime) StopJob(id, job string) (Job, error) {
	ls, err := r.session(id)
	if err != nil {
		return Job{}, err
	}
	ls.mu.Lock()
	rj := ls.jobs[job]
	ls.mu.Unlock()
	if rj == nil {
		var j Job
		if err := r.cfg.Store.Get("job/"+id+"/"+job, &j); err == nil {
			return j, nil // already over
		}
		return Job{}, fmt.Errorf("%w: no job %s", ErrNotFound, job)
	}
	rj.mu.Lock()
	rj.stopped = true
	rj.mu.Unlock()
	if err := rj.group.Kill(); err != nil {
		return Job{}, err
	}
	<-rj.done
	return rj.snapshot(), nil
}

// watchPreview notices when a job starts listening on a local TCP port
// and puts a preview link on its card.
func (r *Runtime) watchPreview(ls *liveSession, rj *runningJob, stop chan struct{}) {
	t := time.NewTicker(300 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		pids, _ := rj.group.Procs()
		if port := listeningPort(pids); port > 0 {
			rj.mu.Lock()
			rj.j.Preview = "http://127.0.0.1:" + strconv.Itoa(port) + "/"
			card := rj.j
			rj.mu.Unlock()
			r.saveJob(card)
			ls.events.emit("job.preview", card.Turn, card.ID, map[string]string{"url": card.Preview})
			return
		}
	}
}

// listeningPort finds a TCP port one of the processes listens on.
func listeningPort(pids []int) int {
	inodes := map[string]bool{}
	for _, p := range pids {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p))
		for _, fd := range fds {
			link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", p, fd.Name()))
			if err == nil && strings.HasPrefix(link, "socket:[") {
				inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0
	}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// local_address st ... inode: state 0A is LISTEN.
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
				continue
			}
			if i := strings.LastIndex(fields[1], ":"); i >= 0 {
				if port, err := strconv.ParseUint(fields[1][i+1:], 16, 16); err == nil {
					f.Close()
					return int(port)
				}
			}
		}
		f.Close()
	}
	return 0
}
