package hub_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/lowkeyhq/lowkey/companion"
	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/errcode"
	"github.com/lowkeyhq/lowkey/internal/testenv"
)

// sessionBus starts a private D-Bus session bus for the test and points
// the process at it.
func sessionBus(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("dbus-daemon")
	if err != nil {
		testenv.Missing(t, "dbus-daemon (apt-get install dbus)")
	}
	dir := t.TempDir()
	cmd := exec.Command(bin, "--session", "--nofork", "--print-address=1", "--address=unix:path="+filepath.Join(dir, "bus"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon: %v", err)
	}
	addr = strings.TrimSpace(addr)
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", addr)
	return addr
}

// owned waits until a name has an owner on the bus.
func owned(t *testing.T, bus *dbus.Conn, name string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var has bool
		if err := bus.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, name).Store(&has); err == nil && has {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing owns %s on the test's bus", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// watcher stands for a desktop's tray: the status-notifier watcher items
// register with.
type watcher struct {
	mu    sync.Mutex
	items []string
}

func (w *watcher) RegisterStatusNotifierItem(service string, sender dbus.Sender) *dbus.Error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.items = append(w.items, string(sender))
	return nil
}

// notifications stands for a notification daemon once Debian's is gone:
// it records what it is asked to show, and can click a button.
type notifications struct {
	mu    sync.Mutex
	next  uint32
	shown []shownNote
}

type shownNote struct {
	ID      uint32
	Summary string
	Actions []string
}

func (n *notifications) Notify(app string, replaces uint32, icon, summary, body string, actions []string, hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.next++
	n.shown = append(n.shown, shownNote{ID: n.next, Summary: summary, Actions: actions})
	return n.next, nil
}

func (n *notifications) CloseNotification(id uint32) *dbus.Error { return nil }

func (n *notifications) last(summary string) (shownNote, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := len(n.shown) - 1; i >= 0; i-- {
		if strings.HasPrefix(n.shown[i].Summary, summary) {
			return n.shown[i], true
		}
	}
	return shownNote{}, false
}

// On a desktop with a session bus: Debian's notification daemon (dunst)
// shows the question, urgent, and the "being controlled" notice; the tray
// item registers with the desktop's watcher, says control is active, and
// a click on it pauses everything. A button on the question's
// notification answers it; the same signal from another program on the
// bus does not.
func TestTheComputersDesktopShowsAndAnswers(t *testing.T) {
	display := testenv.Xvfb(t, 1024, 768)
	addr := sessionBus(t)
	dunst, err := exec.LookPath("dunst")
	if err != nil {
		testenv.Missing(t, "dunst (apt-get install dunst)")
	}
	dir := t.TempDir()
	record := filepath.Join(dir, "shown")
	script := filepath.Join(dir, "record.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nprintf '%s|%s|%s\\n' \"$1\" \"$2\" \"$5\" >> "+record+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "dunstrc")
	if err := os.WriteFile(conf, []byte("[lowkey]\nappname = Lowkey\nscript = "+script+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := exec.Command(dunst, "-config", conf)
	d.Env = append(os.Environ(), "DISPLAY="+display, "DBUS_SESSION_BUS_ADDRESS="+addr)
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	dunstDone := make(chan struct{})
	go func() { _ = d.Wait(); close(dunstDone) }()
	t.Cleanup(func() { _ = d.Process.Kill(); <-dunstDone })
	bus, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	owned(t, bus, "org.freedesktop.Notifications")
	w := &watcher{}
	if err := bus.Export(w, "/StatusNotifierWatcher", "org.kde.StatusNotifierWatcher"); err != nil {
		t.Fatal(err)
	}
	if reply, err := bus.RequestName("org.kde.StatusNotifierWatcher", dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("the watcher's name: %v %v", reply, err)
	}

	p := startControlPair(t, nil, func(c *companion.Config) { c.Display = display })
	if err := p.State.SetRule(companion.Ask, devicectl.CapBrowser); err != nil {
		t.Fatal(err)
	}
	s := newConversation(t, p)
	s.access(true, false)
	call := func(conv string) chan error {
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := p.Hub.Call(ctx, p.DeviceID, "browser.tabs", conv, nil)
			done <- err
		}()
		return done
	}
	shownByDunst := func(summary string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			b, _ := os.ReadFile(record)
			if strings.Contains(string(b), "Lowkey|"+summary+"|CRITICAL") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("dunst did not show %q urgently; it showed:\n%s", summary, b)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	done := call(s.id)
	q := question(t, p)
	shownByDunst("Lowkey: the box asks to use this computer")
	shownByDunst("Lowkey: this computer is being controlled")
	if _, err := p.Runner.Answer(q.ID, companion.AllowConversation); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// The tray item: registered, saying control is active; a click pauses.
	var item string
	deadline := time.Now().Add(10 * time.Second)
	for item == "" {
		w.mu.Lock()
		if len(w.items) > 0 {
			item = w.items[0]
		}
		w.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("no status-notifier item registered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	obj := bus.Object(item, "/StatusNotifierItem")
	var status dbus.Variant
	if err := obj.Call("org.freedesktop.DBus.Properties.Get", 0, "org.kde.StatusNotifierItem", "Status").Store(&status); err != nil || status.Value() != "NeedsAttention" {
		t.Fatalf("the tray item's status: %v %v", status, err)
	}
	// Its tool tip says who holds control and for which conversation.
	var tip dbus.Variant
	if err := obj.Call("org.freedesktop.DBus.Properties.Get", 0, "org.kde.StatusNotifierItem", "ToolTip").Store(&tip); err != nil ||
		!strings.Contains(fmt.Sprint(tip.Value()), "Controlled by the box box for "+s.id) {
		t.Fatalf("the tray item's tool tip: %v %v", tip, err)
	}
	if err := obj.Call("org.kde.StatusNotifierItem.Activate", 0, int32(0), int32(0)).Err; err != nil {
		t.Fatal(err)
	}
	if paused, err := p.State.Paused(); err != nil || !paused {
		t.Fatalf("a click on the tray item did not pause: %v %v", paused, err)
	}
	if err := <-call(s.id); !errcode.Has(err, errcode.Paused) {
		t.Fatalf("after the click: %v", err)
	}
	if err := p.State.SetPaused(false); err != nil {
		t.Fatal(err)
	}

	// Debian's daemon goes; one that can click takes its place.
	_ = d.Process.Kill()
	<-dunstDone
	n := &notifications{}
	if err := bus.Export(n, "/org/freedesktop/Notifications", "org.freedesktop.Notifications"); err != nil {
		t.Fatal(err)
	}
	if reply, err := bus.RequestName("org.freedesktop.Notifications", dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("the notifications' name: %v %v", reply, err)
	}
	s2 := newConversation(t, p)
	s2.access(true, false)
	done = call(s2.id)
	q = question(t, p)
	var note shownNote
	deadline = time.Now().Add(10 * time.Second)
	for {
		var ok bool
		if note, ok = n.last("Lowkey: the box asks"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the question was not shown")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b, _ := json.Marshal(note.Actions); !strings.Contains(string(b), `"conversation","Allow for this conversation","hour","Allow for an hour","deny","Deny"`) {
		t.Fatalf("the question's buttons: %s", b)
	}
	// Another program on the bus "clicks" Allow: nothing happens.
	other, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Emit("/org/freedesktop/Notifications", "org.freedesktop.Notifications.ActionInvoked", note.ID, companion.AllowConversation); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if qs := p.Runner.Status().Questions; len(qs) != 1 || qs[0].ID != q.ID {
		t.Fatalf("a forged click answered the question: %v", qs)
	}
	// The daemon's own Deny button: refused.
	if err := bus.Emit("/org/freedesktop/Notifications", "org.freedesktop.Notifications.ActionInvoked", note.ID, companion.Deny); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errcode.Has(err, errcode.Declined) || !strings.Contains(err.Error(), "denied") {
		t.Fatalf("after the Deny button: %v", err)
	}
}
