package browser

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	_ "image/jpeg" // the sizes of screenshots
	_ "image/png"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/input"
	"github.com/go-rod/rod/lib/proto"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/errcode"
)

type actionFunc func(b *Browser, ctx context.Context, args json.RawMessage) (*devicectl.Result, error)

var actions = map[string]actionFunc{
	"tabs":       (*Browser).tabs,
	"navigate":   (*Browser).navigate,
	"back":       (*Browser).back,
	"forward":    (*Browser).forward,
	"snapshot":   (*Browser).snapshot,
	"find":       (*Browser).find,
	"fill":       (*Browser).fillForm,
	"click":      (*Browser).click,
	"hover":      (*Browser).hover,
	"type":       (*Browser).typeText,
	"press":      (*Browser).press,
	"select":     (*Browser).selectOption,
	"scroll":     (*Browser).scroll,
	"wait_for":   (*Browser).waitFor,
	"screenshot": (*Browser).screenshot,
	"upload":     (*Browser).upload,
	"downloads":  (*Browser).listDownloads,
	"dialog":     (*Browser).answerDialog,
	"eval":       (*Browser).eval,
	"drag":       (*Browser).drag,
	"resize":     (*Browser).resize,
	"pdf":        (*Browser).pdf,
	"console":    (*Browser).console,
	"network":    (*Browser).network,
}

// Names lists the browser actions this package serves.
func Names() []string {
	out := make([]string, 0, len(actions))
	for n := range actions {
		out = append(out, "browser."+n)
	}
	return out
}

// pageState is what most actions answer with: where the tab is now.
type pageState struct {
	URL   string `json:"url"`
	Title string `json:"title"`
}

func state(p *rod.Page) pageState {
	info, err := p.Info()
	if err != nil {
		return pageState{}
	}
	return pageState{URL: info.URL, Title: info.Title}
}

func (b *Browser) tabs(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		Select string `json:"select"`
		Close  string `json:"close"`
		New    string `json:"new"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	cur, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	pages, err := b.b.Pages()
	if err != nil {
		return nil, err
	}
	find := func(id string) *rod.Page {
		for _, p := range pages {
			if string(p.TargetID) == id {
				return p
			}
		}
		return nil
	}
	did := ""
	switch {
	case a.New != "":
		u, err := checkURL(a.New)
		if err != nil {
			return nil, err
		}
		p, err := b.b.Page(proto.TargetCreateTarget{URL: u})
		if err != nil {
			return nil, err
		}
		_ = p.Context(ctx).WaitLoad()
		b.page, did = p, "opened "+u
		pages, _ = b.b.Pages()
	case a.Select != "":
		p := find(a.Select)
		if p == nil {
			return nil, errcode.New(errcode.NotFound, "no tab %s", a.Select)
		}
		if _, err := p.Context(ctx).Activate(); err != nil {
			return nil, err
		}
		b.page, did = p, "selected "+a.Select
	case a.Close != "":
		p := find(a.Close)
		if p == nil {
			return nil, errcode.New(errcode.NotFound, "no tab %s", a.Close)
		}
		if err := p.Context(ctx).Close(); err != nil {
			return nil, err
		}
		if p.TargetID == cur.TargetID {
			b.page = nil
		}
		did = "closed " + a.Close
		pages, _ = b.b.Pages()
	}
	type tab struct {
		ID     string `json:"id"`
		URL    string `json:"url"`
		Title  string `json:"title"`
		Active bool   `json:"active"`
	}
	out := struct {
		Did  string `json:"did,omitempty"`
		Tabs []tab  `json:"tabs"`
	}{Did: did, Tabs: []tab{}}
	for _, p := range pages {
		info, err := p.Info()
		if err != nil || info.Type != proto.TargetTargetInfoTypePage {
			continue
		}
		out.Tabs = append(out.Tabs, tab{ID: string(p.TargetID), URL: info.URL, Title: info.Title, Active: b.page != nil && p.TargetID == b.page.TargetID})
	}
	return devicectl.JSONResult(out)
}

func (b *Browser) navigate(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		URL string `json:"url"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	u, err := checkURL(a.URL)
	if err != nil {
		return nil, err
	}
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	// Waiting on the load event as it comes, not asking the page after.
	loaded := p.WaitNavigation(proto.PageLifecycleEventNameLoad)
	if err := p.Navigate(u); err != nil {
		return nil, errcode.Wrap(errcode.NavigationFailed, err, fmt.Sprintf("could not open %s", u))
	}
	loaded()
	b.refs = nil
	return devicectl.JSONResult(state(p))
}

func (b *Browser) back(ctx context.Context, _ json.RawMessage) (*devicectl.Result, error) {
	return b.history(ctx, (*rod.Page).NavigateBack)
}

func (b *Browser) forward(ctx context.Context, _ json.RawMessage) (*devicectl.Result, error) {
	return b.history(ctx, (*rod.Page).NavigateForward)
}

// history goes back or forward, and says from where.
func (b *Browser) history(ctx context.Context, move func(*rod.Page) error) (*devicectl.Result, error) {
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	before := state(p).URL
	if err := move(p); err != nil {
		return nil, err
	}
	_ = p.WaitLoad()
	b.refs = nil
	return devicectl.JSONResult(struct {
		pageState
		From string `json:"from"`
	}{state(p), before})
}

// fillForm types into several fields at once, each checked as type
// checks one; the first that cannot take text stops it, saying which.
func (b *Browser) fillForm(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		Fields []struct {
			Ref  string `json:"ref"`
			Text string `json:"text"`
		} `json:"fields"`
		Submit    bool `json:"submit"`
		TimeoutMS int  `json:"timeout_ms"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	if len(a.Fields) == 0 || len(a.Fields) > 100 {
		return nil, errcode.New(errcode.BadArgs, "fill needs 1 to 100 fields, each a ref and its text")
	}
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	bf := b.before(p)
	type filled struct {
		Ref      string `json:"ref"`
		Password bool   `json:"password_field"`
	}
	done := []filled{}
	for _, f := range a.Fields {
		pw, err := b.typeInto(ctx, p, f.Ref, f.Text, target{TimeoutMS: a.TimeoutMS}.limit())
		if err != nil {
			return nil, err
		}
		done = append(done, filled{f.Ref, pw})
	}
	if a.Submit {
		if err := b.submit(p); err != nil {
			return nil, err
		}
	}
	return devicectl.JSONResult(struct {
		changed
		Fields []filled `json:"fields"`
	}{b.changes(p, bf), done})
}

// target is an element by ref, or a point in CSS pixels.
type target struct {
	Ref string   `json:"ref"`
	X   *float64 `json:"x"`
	Y   *float64 `json:"y"`
	// TimeoutMS is how long to wait for the element to take a pointer
	// (DefaultActionTimeout when 0).
	TimeoutMS int `json:"timeout_ms"`
}

func (t target) limit() time.Duration {
	if t.TimeoutMS <= 0 {
		return DefaultActionTimeout
	}
	return min(time.Duration(t.TimeoutMS)*time.Millisecond, 30*time.Second)
}

func (b *Browser) element(ctx context.Context, p *rod.Page, ref string) (*rod.Element, error) {
	rt, ok := b.refs[ref]
	if !ok || b.refPage != p.TargetID {
		return nil, errcode.New(errcode.StaleRef, "ref %q is not from this page's latest snapshot: take a snapshot first", ref)
	}
	// A ref inside a frame of its own process is resolved there.
	owner := p
	if rt.page != nil {
		owner = rt.page.Context(ctx)
	}
	obj, err := proto.DOMResolveNode{BackendNodeID: rt.id}.Call(owner)
	if err != nil {
		return nil, errcode.New(errcode.StaleRef, "ref %q is not on the page any more: take a new snapshot", ref)
	}
	el, err := owner.ElementFromObject(obj.Object)
	if err != nil {
		return nil, err
	}
	return el.Context(ctx), nil
}

// before is what an action may change, taken before it.
type before struct {
	url       string
	tabs      map[proto.TargetTargetID]bool
	downloads int
}

func (b *Browser) before(p *rod.Page) before {
	bf := before{url: state(p).URL, tabs: map[proto.TargetTargetID]bool{}}
	if pages, err := b.b.Pages(); err == nil {
		for _, pg := range pages {
			bf.tabs[pg.TargetID] = true
		}
	}
	b.mu.Lock()
	bf.downloads = len(b.downloads)
	b.mu.Unlock()
	return bf
}

// settle waits for the page's next frame (bounded: a page that opened a
// dialog, or draws no frames, does not hold the answer up).
func (b *Browser) settle(p *rod.Page) {
	if b.openDialog() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, _ = p.Context(ctx).Eval(`() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))`)
}

// changed is what an action did beyond itself, so the agent need not ask.
type changed struct {
	pageState
	Navigated bool                               `json:"navigated,omitempty"`
	NewTabs   []string                           `json:"new_tabs,omitempty"`
	Downloads []string                           `json:"downloads_started,omitempty"`
	Dialog    *proto.PageJavascriptDialogOpening `json:"dialog,omitempty"`
	Via       string                             `json:"via,omitempty"`
}

func (b *Browser) changes(p *rod.Page, bf before) changed {
	out := changed{Dialog: b.openDialog()}
	if out.Dialog == nil {
		// A click that navigates: the answer is the page it led to.
		if state(p).URL != bf.url {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = p.Context(ctx).WaitLoad()
			cancel()
		}
	}
	out.pageState = state(p)
	out.Navigated = out.URL != bf.url
	if pages, err := b.b.Pages(); err == nil {
		for _, pg := range pages {
			if !bf.tabs[pg.TargetID] {
				if info, err := pg.Info(); err == nil && info.Type == proto.TargetTargetInfoTypePage {
					out.NewTabs = append(out.NewTabs, string(pg.TargetID)+" "+info.URL)
				}
			}
		}
	}
	b.mu.Lock()
	for _, d := range b.downloads[bf.downloads:] {
		out.Downloads = append(out.Downloads, d.ID+" "+d.Name)
	}
	b.mu.Unlock()
	return out
}

// pointer moves the mouse to t (an element checked to be reachable, or a
// point) and runs do there.
func (b *Browser) pointer(ctx context.Context, t target, needEnabled bool, do func(p *rod.Page) error) (*devicectl.Result, error) {
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	pt, via, err := b.spot(ctx, p, t, needEnabled)
	if err != nil {
		return nil, err
	}
	bf := b.before(p)
	if err := p.Mouse.MoveTo(pt); err != nil {
		return nil, err
	}
	if err := do(p); err != nil {
		return nil, err
	}
	// A click may navigate, open a tab, a dialog or a download: its
	// handlers run before the page's next frame.
	b.settle(p)
	out := b.changes(p, bf)
	out.Via = via
	return devicectl.JSONResult(out)
}

func (b *Browser) click(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		target
		Button string `json:"button"`
		Count  int    `json:"count"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	button := proto.InputMouseButtonLeft
	switch a.Button {
	case "", "left":
	case "right":
		button = proto.InputMouseButtonRight
	case "middle":
		button = proto.InputMouseButtonMiddle
	default:
		return nil, errcode.New(errcode.BadArgs, "button is left, right or middle")
	}
	if a.Count <= 0 {
		a.Count = 1
	}
	return b.pointer(ctx, a.target, true, func(p *rod.Page) error {
		// A click that opens a dialog does not return until the dialog
		// is answered: do not wait for it.
		done := make(chan error, 1)
		go func() { done <- p.Mouse.Click(button, a.Count) }()
		for {
			select {
			case err := <-done:
				return err
			case <-time.After(100 * time.Millisecond):
				if b.openDialog() != nil {
					return nil
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})
}

func (b *Browser) hover(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a target
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	return b.pointer(ctx, a, false, func(*rod.Page) error { return nil })
}

// field is a ref checked to take typing: reachable, enabled, not read-only.
func (b *Browser) field(ctx context.Context, p *rod.Page, ref string, limit time.Duration) (*rod.Element, error) {
	el, _, _, err := b.reach(ctx, p, ref, limit, true)
	if err != nil {
		return nil, err
	}
	ro, err := el.Eval(`function () { return !!this.readOnly || this.getAttribute("aria-readonly") === "true" }`)
	if err != nil {
		return nil, err
	}
	if ro.Value.Bool() {
		return nil, errcode.New(errcode.NotActionable, "%s is read-only", ref)
	}
	return el, nil
}

// typeInto replaces the text of ref's field, checked as field checks it,
// and says whether it is a password field.
func (b *Browser) typeInto(ctx context.Context, p *rod.Page, ref, text string, limit time.Duration) (bool, error) {
	el, err := b.field(ctx, p, ref, limit)
	if err != nil {
		return false, err
	}
	t, err := el.Attribute("type")
	password := err == nil && t != nil && strings.EqualFold(*t, "password")
	return password, fill(el, text)
}

// submit presses Enter, as a person sends a form, and lets the page act.
func (b *Browser) submit(p *rod.Page) error {
	if err := p.Keyboard.Type(input.Enter); err != nil {
		return err
	}
	b.settle(p)
	return nil
}

// fill replaces a field's value with text, as typing it would.
func fill(el *rod.Element, text string) error {
	if err := el.Focus(); err != nil {
		return err
	}
	// Select what is there (a field's value, an editable element's
	// content), so the text replaces it.
	if _, err := el.Eval(`function () {
		if (typeof this.select === "function") { this.select(); return; }
		const r = document.createRange(); r.selectNodeContents(this);
		const s = getSelection(); s.removeAllRanges(); s.addRange(r);
	}`); err != nil {
		return err
	}
	if text == "" {
		return el.Page().Keyboard.Type(input.Backspace)
	}
	return el.Page().InsertText(text)
}

func (b *Browser) typeText(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		Ref       string `json:"ref"`
		Text      string `json:"text"`
		Submit    bool   `json:"submit"`
		TimeoutMS int    `json:"timeout_ms"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	password := false
	bf := b.before(p)
	if a.Ref != "" {
		if password, err = b.typeInto(ctx, p, a.Ref, a.Text, target{TimeoutMS: a.TimeoutMS}.limit()); err != nil {
			return nil, err
		}
	} else if err := p.InsertText(a.Text); err != nil {
		return nil, err
	}
	if a.Submit {
		if err := b.submit(p); err != nil {
			return nil, err
		}
	}
	return devicectl.JSONResult(struct {
		changed
		Typed    int  `json:"typed_chars"`
		Password bool `json:"password_field"`
	}{b.changes(p, bf), len([]rune(a.Text)), password})
}

var keyNames = map[string]input.Key{
	"enter": input.Enter, "return": input.Enter, "tab": input.Tab, "escape": input.Escape, "esc": input.Escape,
	"backspace": input.Backspace, "delete": input.Delete, "space": input.Space,
	"arrowup": input.ArrowUp, "arrowdown": input.ArrowDown, "arrowleft": input.ArrowLeft, "arrowright": input.ArrowRight,
	"up": input.ArrowUp, "down": input.ArrowDown, "left": input.ArrowLeft, "right": input.ArrowRight,
	"home": input.Home, "end": input.End, "pageup": input.PageUp, "pagedown": input.PageDown,
	"control": input.ControlLeft, "ctrl": input.ControlLeft, "shift": input.ShiftLeft, "alt": input.AltLeft,
	"meta": input.MetaLeft, "cmd": input.MetaLeft, "super": input.MetaLeft,
	"f1": input.F1, "f2": input.F2, "f3": input.F3, "f4": input.F4, "f5": input.F5, "f6": input.F6,
	"f7": input.F7, "f8": input.F8, "f9": input.F9, "f10": input.F10, "f11": input.F11, "f12": input.F12,
}

// parseCombo reads "Enter", "a", "Control+a", "Shift+Tab".
func parseCombo(s string) ([]input.Key, error) {
	if s == "" {
		return nil, errcode.New(errcode.BadArgs, "press needs a key, like Enter or Control+a")
	}
	var keys []input.Key
	for _, part := range strings.Split(s, "+") {
		if part == "" {
			part = "+"
		}
		if k, ok := keyNames[strings.ToLower(part)]; ok {
			keys = append(keys, k)
			continue
		}
		r := []rune(part)
		if len(r) == 1 && r[0] >= 0x20 && r[0] < 0x7f {
			keys = append(keys, input.Key(r[0]))
			continue
		}
		return nil, errcode.New(errcode.BadArgs, "unknown key %q", part)
	}
	return keys, nil
}

func (b *Browser) press(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		Key string `json:"key"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	keys, err := parseCombo(a.Key)
	if err != nil {
		return nil, err
	}
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	ka := p.KeyActions()
	if len(keys) > 1 {
		ka = ka.Press(keys[:len(keys)-1]...)
	}
	if err := ka.Type(keys[len(keys)-1]).Do(); err != nil {
		return nil, err
	}
	return devicectl.JSONResult(struct {
		pageState
		Pressed string `json:"pressed"`
	}{state(p), a.Key})
}

func (b *Browser) selectOption(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		Ref    string   `json:"ref"`
		Values []string `json:"values"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.Ref == "" || len(a.Values) == 0 {
		return nil, errcode.New(errcode.BadArgs, "select needs a ref and values")
	}
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	el, err := b.element(ctx, p, a.Ref)
	if err != nil {
		return nil, err
	}
	// Match each wanted value against the options' values or labels.
	res, err := el.Eval(`function (wanted) {
		if (this.tagName !== "SELECT") return {error: "not a select element"};
		const picked = [];
		for (const o of this.options) {
			const hit = wanted.includes(o.value) || wanted.includes(o.label) || wanted.includes(o.text.trim());
			if (hit && (this.multiple || picked.length === 0)) { o.selected = true; picked.push(o.value); }
			else if (this.multiple) o.selected = false;
		}
		if (picked.length === 0) return {error: "no option matches"};
		this.dispatchEvent(new Event("input", {bubbles: true}));
		this.dispatchEvent(new Event("change", {bubbles: true}));
		return {selected: picked};
	}`, a.Values)
	if err != nil {
		return nil, err
	}
	var out struct {
		Error    string   `json:"error"`
		Selected []string `json:"selected"`
	}
	_ = json.Unmarshal([]byte(res.Value.JSON("", "")), &out)
	if out.Error != "" {
		return nil, errcode.New(errcode.BadArgs, "select %s: %s (wanted %q)", a.Ref, out.Error, a.Values)
	}
	return devicectl.JSONResult(struct {
		pageState
		Selected []string `json:"selected"`
	}{state(p), out.Selected})
}

// scrollBy scrolls what a person's wheel would at the middle of the
// window (the page, or the scrolling box there), by at most what is left,
// and says where it ended.
const scrollBy = `function (dx, dy) {
	const canScroll = e => { const s = getComputedStyle(e); return /(auto|scroll)/.test(s.overflowY + s.overflowX) && (e.scrollHeight > e.clientHeight || e.scrollWidth > e.clientWidth); };
	let box = document.elementFromPoint(innerWidth / 2, innerHeight / 2);
	while (box && box !== document.body && box !== document.documentElement && !canScroll(box)) box = box.parentElement;
	const page = !box || box === document.body || box === document.documentElement;
	const el = page ? document.scrollingElement : box;
	const maxX = el.scrollWidth - el.clientWidth, maxY = el.scrollHeight - el.clientHeight;
	el.scrollTo({ left: Math.max(0, Math.min(maxX, el.scrollLeft + dx)), top: Math.max(0, Math.min(maxY, el.scrollTop + dy)), behavior: "instant" });
	return { scroll_x: el.scrollLeft, scroll_y: el.scrollTop, max_scroll_x: Math.max(0, maxX), max_scroll_y: Math.max(0, maxY),
		at_end: el.scrollTop >= maxY - 1, at_start: el.scrollTop <= 0, container: page ? "page" : "<" + el.tagName.toLowerCase() + (el.id ? " id=" + el.id : "") + ">" };
}`

func (b *Browser) scroll(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		DX  float64 `json:"dx"`
		DY  float64 `json:"dy"`
		Ref string  `json:"ref"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	if a.Ref != "" {
		el, err := b.element(ctx, p, a.Ref)
		if err != nil {
			return nil, err
		}
		if _, err := el.Eval(`function () { this.scrollIntoView({ block: "center", behavior: "instant" }) }`); err != nil {
			return nil, err
		}
	}
	res, err := p.Eval(scrollBy, a.DX, a.DY)
	if err != nil {
		return nil, err
	}
	var where map[string]any
	if err := json.Unmarshal([]byte(res.Value.JSON("", "")), &where); err != nil {
		return nil, err
	}
	st := state(p)
	where["url"], where["title"] = st.URL, st.Title
	return devicectl.JSONResult(where)
}

func (b *Browser) waitFor(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		Text      string `json:"text"`
		Ref       string `json:"ref"`
		TimeoutMS int    `json:"timeout_ms"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	if (a.Text == "") == (a.Ref == "") {
		return nil, errcode.New(errcode.BadArgs, "wait_for needs text or ref")
	}
	if a.TimeoutMS <= 0 {
		a.TimeoutMS = 10000
	}
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	limit := time.Duration(a.TimeoutMS) * time.Millisecond
	for {
		found := false
		if a.Text != "" {
			r, err := p.Eval(`(t) => document.body ? document.body.innerText.includes(t) : false`, a.Text)
			found = err == nil && r.Value.Bool()
		} else {
			_, err := b.element(ctx, p, a.Ref)
			found = err == nil
		}
		if found {
			return devicectl.JSONResult(struct {
				pageState
				WaitedMS int64 `json:"waited_ms"`
			}{state(p), time.Since(start).Milliseconds()})
		}
		if time.Since(start) >= limit {
			return nil, errcode.New(errcode.Timeout, "waited %d ms and it did not appear", a.TimeoutMS)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(100*time.Millisecond, limit-time.Since(start))):
		}
	}
}

func (b *Browser) screenshot(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		MaxEdge int    `json:"max_edge"`
		Format  string `json:"format"`
		Quality int    `json:"quality"`
		// Ref shoots one element; FullPage the whole page, not only the
		// window.
		Ref      string `json:"ref"`
		FullPage bool   `json:"full_page"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	format := proto.PageCaptureScreenshotFormatPng
	switch a.Format {
	case "", "png":
		a.Format = "png"
	case "jpeg", "jpg":
		a.Format, format = "jpeg", proto.PageCaptureScreenshotFormatJpeg
	case "webp":
		format = proto.PageCaptureScreenshotFormatWebp
	default:
		return nil, errcode.New(errcode.BadArgs, "format is png, jpeg or webp")
	}
	if a.Quality <= 0 || a.Quality > 100 {
		a.Quality = 80
	}
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	if a.MaxEdge == 0 && a.Ref == "" && !a.FullPage && format != proto.PageCaptureScreenshotFormatWebp {
		// The window as it is: one call, its size read from the image.
		req := &proto.PageCaptureScreenshot{Format: format, OptimizeForSpeed: true}
		if format != proto.PageCaptureScreenshotFormatPng {
			req.Quality = &a.Quality
		}
		img, err := req.Call(p)
		if err != nil {
			return nil, err
		}
		cfg, _, err := image.DecodeConfig(bytes.NewReader(img.Data))
		if err != nil {
			return nil, err
		}
		return shotResult(p, a.Format, cfg.Width, cfg.Height, 1, img.Data)
	}
	// One element: scrolled into view first, its box (in the window)
	// taken where the page is then.
	var box *proto.DOMRect
	if a.Ref != "" {
		el, err := b.element(ctx, p, a.Ref)
		if err != nil {
			return nil, err
		}
		if err := el.ScrollIntoView(); err != nil {
			return nil, err
		}
		shape, err := el.Shape()
		if err != nil {
			return nil, err
		}
		if box = shape.Box(); box == nil || box.Width <= 0 || box.Height <= 0 {
			return nil, errcode.New(errcode.NotActionable, "%s has no box on the page to show", a.Ref)
		}
	}
	m, err := proto.PageGetLayoutMetrics{}.Call(p)
	if err != nil {
		return nil, err
	}
	vp := m.CSSVisualViewport
	x, y, w, h := vp.PageX, vp.PageY, vp.ClientWidth, vp.ClientHeight
	switch {
	case box != nil:
		// The box is in the window; the clip is in the page.
		x, y, w, h = box.X+vp.PageX, box.Y+vp.PageY, box.Width, box.Height
	case a.FullPage:
		x, y, w, h = 0, 0, m.CSSContentSize.Width, min(m.CSSContentSize.Height, 16384)
	}
	scale := 1.0
	if edge := max(w, h); a.MaxEdge > 0 && edge > float64(a.MaxEdge) {
		scale = float64(a.MaxEdge) / edge
	}
	req := &proto.PageCaptureScreenshot{Format: format, Clip: &proto.PageViewport{X: x, Y: y, Width: w, Height: h, Scale: scale}, CaptureBeyondViewport: a.FullPage || a.Ref != ""}
	if format != proto.PageCaptureScreenshotFormatPng {
		req.Quality = &a.Quality
	}
	img, err := req.Call(p)
	if err != nil {
		return nil, err
	}
	return shotResult(p, a.Format, int(w*scale+0.5), int(h*scale+0.5), scale, img.Data)
}

func shotResult(p *rod.Page, format string, w, h int, scale float64, data []byte) (*devicectl.Result, error) {
	meta, err := json.Marshal(struct {
		pageState
		Format string  `json:"format"`
		Width  int     `json:"width"`
		Height int     `json:"height"`
		Scale  float64 `json:"scale"`
		Bytes  int     `json:"bytes"`
	}{state(p), format, w, h, scale, len(data)})
	if err != nil {
		return nil, err
	}
	return &devicectl.Result{JSON: meta, Blob: data}, nil
}

// MaxUpload bounds a file sent from the box for an upload.
const MaxUpload = 8 << 20

func (b *Browser) upload(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		Ref  string `json:"ref"`
		File struct {
			Name       string `json:"name"`
			DataBase64 string `json:"data_base64"`
		} `json:"file"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	data, err := base64.StdEncoding.DecodeString(a.File.DataBase64)
	if err != nil || a.File.Name == "" {
		return nil, errcode.New(errcode.BadArgs, "upload needs file.name and file.data_base64")
	}
	if len(data) > MaxUpload {
		return nil, errcode.New(errcode.TooLarge, "the file is %d bytes; uploads are limited to %d", len(data), MaxUpload)
	}
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	el, err := b.element(ctx, p, a.Ref)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "lowkey-upload-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, safeName(a.File.Name))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return nil, err
	}
	if err := el.SetFiles([]string{path}); err != nil {
		return nil, err
	}
	return devicectl.JSONResult(struct {
		pageState
		Uploaded string `json:"uploaded"`
		Bytes    int    `json:"bytes"`
	}{state(p), safeName(a.File.Name), len(data)})
}

// MaxFetch bounds a download fetched back to the box.
const MaxFetch = 64 << 20

func (b *Browser) listDownloads(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		Fetch string `json:"fetch"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	b.mu.Lock()
	list := make([]Download, 0, len(b.downloads))
	var want *Download
	for _, d := range b.downloads {
		list = append(list, *d)
		if d.ID == a.Fetch || (a.Fetch != "" && d.Name == a.Fetch) {
			want = d
		}
	}
	b.mu.Unlock()
	if a.Fetch == "" {
		return devicectl.JSONResult(struct {
			Downloads []Download `json:"downloads"`
		}{list})
	}
	if want == nil {
		return nil, errcode.New(errcode.NotFound, "no download %q (see browser.downloads)", a.Fetch)
	}
	if want.State != string(proto.BrowserDownloadProgressStateCompleted) {
		return nil, errcode.New(errcode.NotReady, "download %s is %s", want.Name, want.State)
	}
	fi, err := os.Stat(want.path)
	if err != nil {
		return nil, errcode.Wrap(errcode.NotFound, err, "the downloaded file is gone")
	}
	if fi.Size() > MaxFetch {
		return nil, errcode.New(errcode.TooLarge, "%s is %d bytes; fetching is limited to %d", want.Name, fi.Size(), MaxFetch)
	}
	data, err := os.ReadFile(want.path)
	if err != nil {
		return nil, err
	}
	meta, _ := json.Marshal(struct {
		Download
		Fetched int `json:"fetched_bytes"`
	}{*want, len(data)})
	return &devicectl.Result{JSON: meta, Blob: data}, nil
}

func (b *Browser) answerDialog(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		Accept bool   `json:"accept"`
		Text   string `json:"text"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	b.mu.Lock()
	d, session := b.dialog, b.dialogPg
	b.mu.Unlock()
	if d == nil {
		return nil, errcode.New(errcode.NoDialog, "no dialog is open")
	}
	call := proto.PageHandleJavaScriptDialog{Accept: a.Accept, PromptText: a.Text}
	if _, err := b.b.Call(ctx, string(session), call.ProtoReq(), call); err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.dialog = nil
	b.mu.Unlock()
	return devicectl.JSONResult(struct {
		Type     string `json:"type"`
		Message  string `json:"message"`
		Accepted bool   `json:"accepted"`
	}{string(d.Type), d.Message, a.Accept})
}

func (b *Browser) eval(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		JS string `json:"js"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	r, err := proto.RuntimeEvaluate{Expression: a.JS, ReturnByValue: true, AwaitPromise: true, UserGesture: true}.Call(p)
	if err != nil {
		return nil, err
	}
	if r.ExceptionDetails != nil {
		msg := r.ExceptionDetails.Text
		if r.ExceptionDetails.Exception != nil {
			msg = r.ExceptionDetails.Exception.Description
		}
		return nil, errcode.New(errcode.ScriptError, "the script failed: %s", msg)
	}
	v := json.RawMessage(r.Result.Value.JSON("", ""))
	if len(v) == 0 {
		v = json.RawMessage("null")
	}
	return devicectl.JSONResult(struct {
		Value json.RawMessage `json:"value"`
	}{v})
}
