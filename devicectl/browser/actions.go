package browser

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
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
	"snapshot":   (*Browser).snapshot,
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
	if err := p.Navigate(u); err != nil {
		return nil, errcode.Wrap(errcode.NavigationFailed, err, fmt.Sprintf("could not open %s", u))
	}
	if err := p.WaitLoad(); err != nil {
		return nil, err
	}
	b.refs = nil
	return devicectl.JSONResult(state(p))
}

func (b *Browser) back(ctx context.Context, _ json.RawMessage) (*devicectl.Result, error) {
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	before := state(p).URL
	if err := p.NavigateBack(); err != nil {
		return nil, err
	}
	_ = p.WaitLoad()
	b.refs = nil
	st := state(p)
	return devicectl.JSONResult(struct {
		pageState
		From string `json:"from"`
	}{st, before})
}

// target is an element by ref, or a point in CSS pixels.
type target struct {
	Ref string   `json:"ref"`
	X   *float64 `json:"x"`
	Y   *float64 `json:"y"`
}

func (b *Browser) element(ctx context.Context, p *rod.Page, ref string) (*rod.Element, error) {
	id, ok := b.refs[ref]
	if !ok || b.refPage != p.TargetID {
		return nil, errcode.New(errcode.StaleRef, "ref %q is not from this page's latest snapshot: take a snapshot first", ref)
	}
	obj, err := proto.DOMResolveNode{BackendNodeID: id}.Call(p)
	if err != nil {
		return nil, errcode.New(errcode.StaleRef, "ref %q is not on the page any more: take a new snapshot", ref)
	}
	el, err := p.ElementFromObject(obj.Object)
	if err != nil {
		return nil, err
	}
	return el.Context(ctx), nil
}

func (b *Browser) point(ctx context.Context, t target, do func(*rod.Page, *rod.Element) error) (*devicectl.Result, error) {
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	var el *rod.Element
	switch {
	case t.Ref != "":
		if el, err = b.element(ctx, p, t.Ref); err != nil {
			return nil, err
		}
	case t.X != nil && t.Y != nil:
		if err := p.Mouse.MoveTo(proto.Point{X: *t.X, Y: *t.Y}); err != nil {
			return nil, err
		}
	default:
		return nil, errcode.New(errcode.BadArgs, "give a ref from a snapshot, or x and y")
	}
	if err := do(p, el); err != nil {
		return nil, err
	}
	// A click may navigate or open a dialog; give the page a moment.
	time.Sleep(50 * time.Millisecond)
	out := struct {
		pageState
		Dialog *proto.PageJavascriptDialogOpening `json:"dialog,omitempty"`
	}{pageState: state(p), Dialog: b.openDialog()}
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
	return b.point(ctx, a.target, func(p *rod.Page, el *rod.Element) error {
		if el != nil {
			// A click that opens a dialog does not return until the dialog
			// is answered: do not wait for it.
			done := make(chan error, 1)
			go func() { done <- el.Click(button, a.Count) }()
			select {
			case err := <-done:
				return err
			case <-time.After(2 * time.Second):
				if b.openDialog() != nil {
					return nil
				}
				return <-done
			}
		}
		return p.Mouse.Click(button, a.Count)
	})
}

func (b *Browser) hover(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a target
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	return b.point(ctx, a, func(_ *rod.Page, el *rod.Element) error {
		if el != nil {
			return el.Hover()
		}
		return nil
	})
}

func (b *Browser) typeText(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		Ref    string `json:"ref"`
		Text   string `json:"text"`
		Submit bool   `json:"submit"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	password := false
	if a.Ref != "" {
		el, err := b.element(ctx, p, a.Ref)
		if err != nil {
			return nil, err
		}
		if t, err := el.Attribute("type"); err == nil && t != nil && strings.EqualFold(*t, "password") {
			password = true
		}
		if err := el.Input(a.Text); err != nil {
			return nil, err
		}
	} else if err := p.InsertText(a.Text); err != nil {
		return nil, err
	}
	if a.Submit {
		if err := p.Keyboard.Type(input.Enter); err != nil {
			return nil, err
		}
		_ = p.WaitLoad()
	}
	return devicectl.JSONResult(struct {
		pageState
		Typed    int  `json:"typed_chars"`
		Password bool `json:"password_field"`
	}{state(p), len([]rune(a.Text)), password})
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

func (b *Browser) scroll(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		DX float64 `json:"dx"`
		DY float64 `json:"dy"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	if err := p.Mouse.Scroll(a.DX, a.DY, 1); err != nil {
		return nil, err
	}
	time.Sleep(50 * time.Millisecond) // let the page settle
	pos, err := p.Eval(`() => [window.scrollX, window.scrollY]`)
	if err != nil {
		return nil, err
	}
	var xy [2]float64
	_ = json.Unmarshal([]byte(pos.Value.JSON("", "")), &xy)
	return devicectl.JSONResult(struct {
		pageState
		ScrollX float64 `json:"scroll_x"`
		ScrollY float64 `json:"scroll_y"`
	}{state(p), xy[0], xy[1]})
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
	m, err := proto.PageGetLayoutMetrics{}.Call(p)
	if err != nil {
		return nil, err
	}
	vp := m.CSSVisualViewport
	w, h := vp.ClientWidth, vp.ClientHeight
	scale := 1.0
	if edge := max(w, h); a.MaxEdge > 0 && edge > float64(a.MaxEdge) {
		scale = float64(a.MaxEdge) / edge
	}
	req := &proto.PageCaptureScreenshot{Format: format, Clip: &proto.PageViewport{X: vp.PageX, Y: vp.PageY, Width: w, Height: h, Scale: scale}}
	if format != proto.PageCaptureScreenshotFormatPng {
		req.Quality = &a.Quality
	}
	img, err := req.Call(p)
	if err != nil {
		return nil, err
	}
	meta, _ := json.Marshal(struct {
		pageState
		Format string  `json:"format"`
		Width  int     `json:"width"`
		Height int     `json:"height"`
		Scale  float64 `json:"scale"`
		Bytes  int     `json:"bytes"`
	}{state(p), a.Format, int(w*scale + 0.5), int(h*scale + 0.5), scale, len(img.Data)})
	return &devicectl.Result{JSON: meta, Blob: img.Data}, nil
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
