package companion

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/godbus/dbus/v5/prop"
)

// The desktop, where the person's session bus offers it: questions as
// notifications with their answers as buttons, and while control is
// active an indicator (a status-notifier item in the tray, and a
// notification that stays) whose click pauses control. Without a session
// bus, notify-send and the log say the same, and "lowkey-companion status"
// always does.

const (
	notifyName  = "org.freedesktop.Notifications"
	notifyPath  = "/org/freedesktop/Notifications"
	watcherName = "org.kde.StatusNotifierWatcher"
	itemPath    = "/StatusNotifierItem"
	itemIface   = "org.kde.StatusNotifierItem"
)

// desktop talks to the session bus; nil methods do nothing.
type desktop struct {
	conn *dbus.Conn
	log  *slog.Logger
	// answer answers a question; pause pauses control.
	answer func(id, answer string)
	pause  func()
	// box is the paired box's name, for who holds control.
	box string

	mu        sync.Mutex
	questions map[uint32]string // notification → question
	shown     map[string]uint32 // question → notification
	active    uint32            // the "being controlled" notification
	item      *prop.Properties
	exported  bool
}

// openDesktop connects to the session bus named by
// DBUS_SESSION_BUS_ADDRESS; nil when there is none.
func openDesktop(log *slog.Logger, answer func(id, answer string), pause func()) *desktop {
	if os.Getenv("DBUS_SESSION_BUS_ADDRESS") == "" {
		return nil
	}
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		log.Info("no desktop session bus: questions and the indicator go to notify-send and the log", "err", err)
		return nil
	}
	d := &desktop{conn: conn, log: log, answer: answer, pause: pause, questions: map[uint32]string{}, shown: map[string]uint32{}}
	// Only the notification daemon's own signals: any other program on the
	// bus could send one that looks the same.
	if err := conn.AddMatchSignal(dbus.WithMatchInterface(notifyName), dbus.WithMatchSender(notifyName)); err != nil {
		log.Info("the desktop's notifications cannot be answered", "err", err)
	}
	signals := make(chan *dbus.Signal, 16)
	conn.Signal(signals)
	go d.listen(signals)
	return d
}

func (d *desktop) listen(signals chan *dbus.Signal) {
	for s := range signals {
		switch s.Name {
		case notifyName + ".ActionInvoked":
			var id uint32
			var action string
			if dbus.Store(s.Body, &id, &action) != nil {
				continue
			}
			d.mu.Lock()
			q, isQuestion := d.questions[id]
			isActive := id == d.active && id != 0
			d.mu.Unlock()
			switch {
			case isQuestion && (action == AllowConversation || action == AllowHour || action == Deny):
				d.answer(q, action)
			case isActive && action == "pause":
				d.pause()
			}
		case notifyName + ".NotificationClosed":
			var id uint32
			if len(s.Body) > 0 && dbus.Store(s.Body[:1], &id) == nil {
				d.mu.Lock()
				if q, ok := d.questions[id]; ok {
					delete(d.questions, id)
					delete(d.shown, q)
				}
				if id == d.active {
					d.active = 0
				}
				d.mu.Unlock()
			}
		}
	}
}

// notify shows a notification with actions (key, label pairs) and returns
// its ID; replaces the one with ID replaces when not 0.
func (d *desktop) notify(replaces uint32, summary, body string, critical bool, actions ...string) (uint32, error) {
	hints := map[string]dbus.Variant{}
	if critical {
		hints["urgency"] = dbus.MakeVariant(byte(2))
		hints["resident"] = dbus.MakeVariant(true)
	}
	var id uint32
	err := d.conn.Object(notifyName, notifyPath).Call(notifyName+".Notify", 0,
		"Lowkey", replaces, "dialog-warning", summary, body, actions, hints, int32(0)).Store(&id)
	return id, err
}

// ask shows the questions not shown yet and closes those answered.
func (d *desktop) ask(qs []Question, page string) {
	if d == nil {
		return
	}
	open := map[string]bool{}
	for _, q := range qs {
		open[q.ID] = true
		d.mu.Lock()
		_, done := d.shown[q.ID]
		d.mu.Unlock()
		if done {
			continue
		}
		id, err := d.notify(0, "Lowkey: the box asks to use this computer",
			fmt.Sprintf("Conversation %s wants %s access (its first action: %s). No answer is a no. Also on %s", q.Conversation, q.Capability, q.Action, page), true,
			AllowConversation, "Allow for this conversation", AllowHour, "Allow for an hour", Deny, "Deny")
		if err != nil {
			d.log.Info("the desktop did not show the question", "err", err)
			continue
		}
		d.mu.Lock()
		d.questions[id], d.shown[q.ID] = q.ID, id
		d.mu.Unlock()
	}
	d.mu.Lock()
	var closing []uint32
	for q, id := range d.shown {
		if !open[q] {
			closing = append(closing, id)
			delete(d.shown, q)
			delete(d.questions, id)
		}
	}
	d.mu.Unlock()
	for _, id := range closing {
		d.conn.Object(notifyName, notifyPath).Call(notifyName+".CloseNotification", 0, id)
	}
}

// indicate shows who holds control (a tray item and a notification that
// stays, each with a way to pause), or takes both away when nobody does.
func (d *desktop) indicate(active []string, paused bool) {
	if d == nil {
		return
	}
	d.mu.Lock()
	current := d.active
	d.mu.Unlock()
	status := "Passive"
	tip := "No conversation controls this computer."
	if len(active) > 0 {
		status, tip = "NeedsAttention", "Controlled by the box "+d.box+" for "+strings.Join(active, "; ")+"."
		if paused {
			status, tip = "Active", "Paused here: "+tip
		}
	}
	d.tray(status, tip)
	if len(active) == 0 {
		if current != 0 {
			d.conn.Object(notifyName, notifyPath).Call(notifyName+".CloseNotification", 0, current)
			d.mu.Lock()
			d.active = 0
			d.mu.Unlock()
		}
		return
	}
	id, err := d.notify(current, "Lowkey: this computer is being controlled", tip+" Pause stops every action here.", true, "pause", "Pause")
	if err != nil {
		d.log.Info("the desktop did not show the indicator", "err", err)
		return
	}
	d.mu.Lock()
	d.active = id
	d.mu.Unlock()
}

// tray keeps a status-notifier item on the bus, registered with the
// desktop's watcher where there is one; activating it pauses control.
func (d *desktop) tray(status, tip string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.exported {
		d.exported = true
		if err := d.conn.Export(trayItem{d}, itemPath, itemIface); err != nil {
			d.log.Info("no tray item", "err", err)
			return
		}
		props, err := prop.Export(d.conn, itemPath, prop.Map{itemIface: {
			"Category":   {Value: "ApplicationStatus", Emit: prop.EmitTrue},
			"Id":         {Value: "lowkey-companion", Emit: prop.EmitTrue},
			"Title":      {Value: "Lowkey", Emit: prop.EmitTrue},
			"Status":     {Value: status, Emit: prop.EmitTrue},
			"IconName":   {Value: "dialog-warning", Emit: prop.EmitTrue},
			"ToolTip":    {Value: toolTip(tip), Emit: prop.EmitTrue},
			"ItemIsMenu": {Value: false, Emit: prop.EmitTrue},
		}})
		if err != nil {
			d.log.Info("no tray item", "err", err)
			return
		}
		d.item = props
		node := &introspect.Node{Name: itemPath, Interfaces: []introspect.Interface{introspect.IntrospectData, prop.IntrospectData,
			{Name: itemIface, Methods: []introspect.Method{{Name: "Activate", Args: []introspect.Arg{{Name: "x", Type: "i", Direction: "in"}, {Name: "y", Type: "i", Direction: "in"}}}},
				Properties: props.Introspection(itemIface)}}}
		if err := d.conn.Export(introspect.NewIntrospectable(node), itemPath, "org.freedesktop.DBus.Introspectable"); err != nil {
			d.log.Info("no tray item", "err", err)
		}
		if call := d.conn.Object(watcherName, "/StatusNotifierWatcher").Call(watcherName+".RegisterStatusNotifierItem", 0, d.conn.Names()[0]); call.Err != nil {
			d.log.Info("no tray on this desktop (no status-notifier watcher): the notification stands for it", "err", call.Err)
		}
		return
	}
	if d.item != nil {
		d.item.SetMust(itemIface, "Status", status)
		d.item.SetMust(itemIface, "ToolTip", toolTip(tip))
	}
}

// toolTip is a status-notifier tool tip: icon name, icon pixmaps, title,
// text.
func toolTip(text string) struct {
	Icon   string
	Pixmap []struct {
		W, H int32
		Data []byte
	}
	Title, Text string
} {
	return struct {
		Icon   string
		Pixmap []struct {
			W, H int32
			Data []byte
		}
		Title, Text string
	}{Icon: "dialog-warning", Title: "Lowkey", Text: text}
}

// trayItem is the item's methods.
type trayItem struct{ d *desktop }

// Activate is a click on the item: pause.
func (t trayItem) Activate(x, y int32) *dbus.Error {
	t.d.pause()
	return nil
}

func (d *desktop) close() {
	if d != nil {
		d.conn.Close()
	}
}
