package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/proto"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/errcode"
)

// Snapshot sizes, in characters of the rendered tree. The default keeps a
// page to a few thousand tokens; the hard cap holds whatever is asked.
const (
	DefaultSnapshotChars = 12000
	MaxSnapshotChars     = 100000
	// maxFrames bounds the frames one snapshot reads into.
	maxFrames = 50
)

// refTarget is what a ref acts on: a node, and the frame's own page when
// the frame runs in a process of its own (nil: the tab itself).
type refTarget struct {
	id   proto.DOMBackendNodeID
	page *rod.Page
}

// chromiumRoles are Chromium's own role names, as ARIA names them; ""
// shows the children in the node's place, "-" drops the node.
var chromiumRoles = map[string]string{
	"RootWebArea": "document", "WebArea": "document", "StaticText": "text", "Iframe": "iframe", "IframePresentational": "iframe",
	"Canvas": "img", "Pre": "code", "DescriptionList": "list", "DescriptionListTerm": "term", "DescriptionListDetail": "definition",
	"Figcaption": "caption", "Legend": "legend", "Video": "video", "Audio": "audio", "Details": "group", "DisclosureTriangle": "button",
	"Section": "region", "Mark": "mark", "Time": "time",
	"LabelText": "", "Abbr": "", "Ruby": "", "LineBreak": "", "LayoutTable": "", "LayoutTableRow": "", "LayoutTableCell": "",
	"generic": "", "none": "", "presentation": "", "Unknown": "", "GenericContainer": "",
	"InlineTextBox": "-", "ListMarker": "-",
}

// inline roles are formatting inside running text: their text joins the
// line of what holds them.
var inline = map[string]bool{"strong": true, "emphasis": true, "subscript": true, "superscript": true, "insertion": true, "deletion": true, "mark": true, "time": true}

// interactive roles get a ref and their name; the text inside them is
// their name, not lines of its own.
var interactive = map[string]bool{
	"link": true, "button": true, "checkbox": true, "radio": true, "textbox": true, "searchbox": true, "combobox": true,
	"listbox": true, "option": true, "menuitem": true, "menuitemcheckbox": true, "menuitemradio": true, "tab": true,
	"switch": true, "slider": true, "spinbutton": true, "treeitem": true,
}

// referable roles get a ref too: places to act on, scroll to or read on
// from (browser.snapshot{ref}).
var referable = map[string]bool{
	"navigation": true, "main": true, "contentinfo": true, "banner": true, "complementary": true, "region": true, "form": true,
	"search": true, "article": true, "list": true, "table": true, "grid": true, "img": true, "heading": true, "iframe": true,
	"dialog": true, "alertdialog": true, "menu": true, "menubar": true, "tablist": true, "tabpanel": true, "tree": true, "row": true,
}

// folded roles show as one line by default, their ref expanding them.
var folded = map[string]bool{"navigation": true, "contentinfo": true}

// Properties worth showing, in this order.
var shownProps = []string{"level", "checked", "pressed", "selected", "expanded", "disabled", "required", "invalid", "focused"}

func axString(v *proto.AccessibilityAXValue) string {
	if v == nil {
		return ""
	}
	s := v.Value.String()
	if s == "null" {
		return ""
	}
	return s
}

// normal is text as a person reads it: runs of space as one.
func normal(s string) string { return strings.Join(strings.Fields(s), " ") }

// onode is one line of the outline and what is under it.
type onode struct {
	line string // role, name, properties, ref, text
	ref  string
	role string
	text bool // a line of running text, joinable with the next
	fold bool
	kids []*onode
}

type snapArgs struct {
	MaxChars int    `json:"max_chars"`
	Offset   int    `json:"offset"`
	Ref      string `json:"ref"`
	Full     bool   `json:"full"`
}

func (b *Browser) snapshot(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a snapArgs
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.MaxChars <= 0 {
		a.MaxChars = DefaultSnapshotChars
	}
	if a.Offset < 0 {
		return nil, errcode.New(errcode.BadArgs, "offset is a number of characters from the start, 0 or more")
	}
	a.MaxChars = min(a.MaxChars, MaxSnapshotChars)
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	st := state(p)
	if d := b.openDialog(); d != nil {
		return devicectl.JSONResult(struct {
			pageState
			Dialog *proto.PageJavascriptDialogOpening `json:"dialog"`
			Note   string                             `json:"note"`
		}{st, d, "a dialog is open; answer it with browser.dialog"})
	}
	roots, err := b.outline(ctx, p)
	if err != nil {
		return nil, err
	}
	var lines []string
	if a.Ref != "" {
		n := findRef(roots, a.Ref)
		if n == nil {
			return nil, errcode.New(errcode.StaleRef, "ref %q is not on the page now: take a snapshot first", a.Ref)
		}
		lines = render([]*onode{n}, true)
	} else {
		lines = render(mainFirst(roots), a.Full)
	}
	text, next, total := window(lines, a.Offset, a.MaxChars)
	out := struct {
		pageState
		Snapshot   string `json:"snapshot"`
		Refs       int    `json:"refs"`
		Truncated  bool   `json:"truncated"`
		NextOffset int    `json:"next_offset,omitempty"`
		TotalChars int    `json:"total_chars"`
	}{st, text, len(b.refs), next > 0, next, total}
	return devicectl.JSONResult(out)
}

// window is the lines from offset (characters, at a line's start) that
// fit in limit characters, the note saying how to read on included; next
// is 0 when nothing is left.
func window(lines []string, offset, limit int) (text string, next, total int) {
	size := make([]int, len(lines))
	for i, l := range lines {
		size[i] = utf8.RuneCountInString(l) + 1
		total += size[i]
	}
	pos, i := 0, 0
	for ; i < len(lines) && pos < offset; i++ {
		pos += size[i]
	}
	room := limit
	if total-pos > limit {
		room = limit - noteRoom // the rest does not fit: keep room for the note
	}
	var sb strings.Builder
	used := 0
	for ; i < len(lines) && used+size[i] <= room; i++ {
		sb.WriteString(lines[i])
		sb.WriteByte('\n')
		used += size[i]
		pos += size[i]
	}
	if i == len(lines) {
		return sb.String(), 0, total
	}
	fmt.Fprintf(&sb, "- (%d more characters: browser.snapshot{\"offset\": %d} reads on; browser.find looks for text or a role)\n", total-pos, pos)
	return sb.String(), pos, total
}

// noteRoom is what the read-on note needs at most.
const noteRoom = 120

func render(roots []*onode, unfold bool) []string {
	var out []string
	var walk func(n *onode, depth int)
	walk = func(n *onode, depth int) {
		indent := strings.Repeat("  ", depth)
		if n.fold && !unfold && len(n.kids) > 0 {
			out = append(out, fmt.Sprintf("%s- %s (folded: browser.snapshot{\"ref\": %q} shows it)", indent, n.line, n.ref))
			return
		}
		out = append(out, indent+"- "+n.line)
		for _, k := range n.kids {
			walk(k, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	return out
}

// mainFirst puts the page's main content (its main landmark, else its
// only article) before the rest; where it was, a line says so.
func mainFirst(roots []*onode) []*onode {
	var slots []**onode
	var visit func(list []*onode, role string)
	visit = func(list []*onode, role string) {
		for i := range list {
			if list[i].role == role {
				slots = append(slots, &list[i])
				continue
			}
			visit(list[i].kids, role)
		}
	}
	visit(roots, "main")
	if len(slots) == 0 {
		visit(roots, "article")
	}
	if len(slots) != 1 || (*slots[0]).ref == "" {
		return roots
	}
	found := *slots[0]
	*slots[0] = &onode{line: found.role + " [ref=" + found.ref + "] (shown first, above)", role: "moved"}
	return append([]*onode{found}, roots...)
}

func findRef(roots []*onode, ref string) *onode {
	for _, n := range roots {
		if n.ref == ref {
			return n
		}
		if f := findRef(n.kids, ref); f != nil {
			return f
		}
	}
	return nil
}

// outline reads the tab's accessibility tree, every frame's included, into
// lines with refs; the refs become the ones actions take.
func (b *Browser) outline(ctx context.Context, p *rod.Page) ([]*onode, error) {
	bd := &builder{ctx: ctx, b: b, top: p, refs: map[string]refTarget{}, clickable: map[proto.TargetTargetID]map[proto.DOMBackendNodeID]bool{},
		texts: map[*proto.AccessibilityAXNode]runningText{}}
	if info, err := p.Info(); err == nil {
		if u, err := url.Parse(info.URL); err == nil {
			bd.origin = u.Scheme + "://" + u.Host
		}
	}
	roots, err := bd.frame(p, nil, "")
	if err != nil {
		return nil, err
	}
	b.refs, b.refPage = bd.refs, p.TargetID
	return roots, nil
}

type builder struct {
	ctx       context.Context
	b         *Browser
	top       *rod.Page
	origin    string
	refs      map[string]refTarget
	next      int
	frames    int
	clickable map[proto.TargetTargetID]map[proto.DOMBackendNodeID]bool // by the session's target
	texts     map[*proto.AccessibilityAXNode]runningText
}

// runningText is a subtree's text, and whether text is all it holds.
type runningText struct {
	text string
	only bool
}

// session is the page whose session a frame's tree came from.
func (bd *builder) session(t *axTree) *rod.Page {
	if t.page != nil {
		return t.page.Context(bd.ctx)
	}
	return bd.top
}

// axTree is one frame's tree, and the page whose session it came from.
type axTree struct {
	byID map[proto.AccessibilityAXNodeID]*proto.AccessibilityAXNode
	page *rod.Page // nil: the tab itself
}

// frame reads one frame's tree: the tab's own (page nil, no frame ID), a
// frame in the tab's process (its ID), or one in its own process (page).
func (bd *builder) frame(session *rod.Page, own *rod.Page, frameID proto.PageFrameID) ([]*onode, error) {
	bd.b.axOn(session)
	// What can be clicked is read at the same time as the tree.
	var clicks chan struct{}
	if _, ok := bd.clickable[session.TargetID]; !ok {
		clicks = make(chan struct{})
		go func() {
			defer close(clicks)
			bd.clickableIn(session)
		}()
	}
	res, err := proto.AccessibilityGetFullAXTree{FrameID: frameID}.Call(session)
	if clicks != nil {
		<-clicks
	}
	if err != nil {
		return nil, err
	}
	if len(res.Nodes) == 0 {
		return nil, nil
	}
	t := &axTree{byID: make(map[proto.AccessibilityAXNodeID]*proto.AccessibilityAXNode, len(res.Nodes)), page: own}
	for _, n := range res.Nodes {
		t.byID[n.NodeID] = n
	}
	return bd.kids(t, res.Nodes[0], normal(axString(res.Nodes[0].Name))), nil
}

// axOn keeps a tab's accessibility tree alive between snapshots (about
// half the time of building it afresh each time).
func (b *Browser) axOn(p *rod.Page) {
	if b.axEnabled == nil {
		b.axEnabled = map[proto.TargetTargetID]bool{}
	}
	if b.axEnabled[p.TargetID] {
		return
	}
	if err := (proto.AccessibilityEnable{}).Call(p); err == nil {
		b.axEnabled[p.TargetID] = true
	}
}

// clickableIn are the nodes of a session's documents a person can click
// though nothing says so to assistive tools: a click listener, or the
// pointer cursor where their parent has none.
func (bd *builder) clickableIn(session *rod.Page) map[proto.DOMBackendNodeID]bool {
	if m, ok := bd.clickable[session.TargetID]; ok {
		return m
	}
	m := map[proto.DOMBackendNodeID]bool{}
	bd.clickable[session.TargetID] = m
	snap, err := proto.DOMSnapshotCaptureSnapshot{ComputedStyles: []string{"cursor"}}.Call(session)
	if err != nil {
		return m
	}
	for _, d := range snap.Documents {
		nodes := d.Nodes
		if nodes == nil {
			continue
		}
		cursor := make([]string, len(nodes.BackendNodeID))
		if d.Layout != nil {
			for k, ni := range d.Layout.NodeIndex {
				if ni < len(cursor) && k < len(d.Layout.Styles) && len(d.Layout.Styles[k]) > 0 {
					if si := int(d.Layout.Styles[k][0]); si >= 0 && si < len(snap.Strings) {
						cursor[ni] = snap.Strings[si]
					}
				}
			}
		}
		if nodes.IsClickable != nil {
			for _, i := range nodes.IsClickable.Index {
				if i < len(nodes.BackendNodeID) {
					m[nodes.BackendNodeID[i]] = true
				}
			}
		}
		for i, c := range cursor {
			if c != "pointer" {
				continue
			}
			parent := -1
			if i < len(nodes.ParentIndex) {
				parent = nodes.ParentIndex[i]
			}
			// The pointer is inherited: only where it starts is a target.
			for parent >= 0 && parent < len(cursor) && cursor[parent] == "" {
				if parent < len(nodes.ParentIndex) {
					parent = nodes.ParentIndex[parent]
				} else {
					parent = -1
				}
			}
			if parent < 0 || cursor[parent] != "pointer" {
				m[nodes.BackendNodeID[i]] = true
			}
		}
	}
	return m
}

// isInline: formatting inside running text (<code> among them; a <pre>
// block is a line of its own).
func isInline(n *proto.AccessibilityAXNode) bool {
	r := axString(n.Role)
	return r == "code" || inline[r]
}

func roleOf(n *proto.AccessibilityAXNode) string {
	r := axString(n.Role)
	if m, ok := chromiumRoles[r]; ok {
		return m
	}
	if r != "" && r[0] >= 'A' && r[0] <= 'Z' {
		return "" // another of Chromium's own: its children stand in
	}
	return r
}

// kids are the lines of n's children; running text is joined.
func (bd *builder) kids(t *axTree, n *proto.AccessibilityAXNode, ctxName string) []*onode {
	var out []*onode
	for _, id := range n.ChildIDs {
		c := t.byID[id]
		if c == nil {
			continue
		}
		for _, k := range bd.node(t, c, ctxName) {
			if k.text && len(out) > 0 && out[len(out)-1].text {
				last := out[len(out)-1]
				last.line += " " + strings.TrimPrefix(k.line, "text: ")
				continue
			}
			out = append(out, k)
		}
	}
	return out
}

// textOf is the running text of n's subtree, and whether that is all it
// holds (nothing to act on, nothing structural); each node's is worked
// out once.
func (bd *builder) textOf(t *axTree, n *proto.AccessibilityAXNode, click map[proto.DOMBackendNodeID]bool) (string, bool) {
	if r, ok := bd.texts[n]; ok {
		return r.text, r.only
	}
	var parts []string
	only := true
	for _, id := range n.ChildIDs {
		c := t.byID[id]
		if c == nil {
			continue
		}
		role := roleOf(c)
		switch {
		case role == "-":
		case role == "text" && !c.Ignored:
			if s := normal(axString(c.Name)); s != "" {
				parts = append(parts, s)
			}
		case c.Ignored || role == "" || isInline(c):
			if click[c.BackendDOMNodeID] && role == "" && !c.Ignored {
				only = false
			}
			text, o := bd.textOf(t, c, click)
			if text != "" {
				parts = append(parts, text)
			}
			only = only && o
		default:
			only = false
			if s := normal(axString(c.Name)); s != "" {
				parts = append(parts, s)
			}
		}
	}
	r := runningText{strings.Join(parts, " "), only}
	bd.texts[n] = r
	return r.text, r.only
}

func (bd *builder) ref(t *axTree, n *proto.AccessibilityAXNode) string {
	if n.BackendDOMNodeID == 0 {
		return ""
	}
	bd.next++
	ref := "e" + strconv.Itoa(bd.next)
	bd.refs[ref] = refTarget{id: n.BackendDOMNodeID, page: t.page}
	return ref
}

func (bd *builder) node(t *axTree, n *proto.AccessibilityAXNode, ctxName string) []*onode {
	role := roleOf(n)
	if role == "-" {
		return nil
	}
	click := bd.clickableIn(bd.session(t))
	if n.Ignored || role == "" || isInline(n) {
		// A clickable element without a role is something to click.
		// (Not a label: its control has a ref of its own; not a box
		// with controls inside: they are the targets.)
		if !n.Ignored && role == "" && click[n.BackendDOMNodeID] && axString(n.Role) != "LabelText" {
			if text, only := bd.textOf(t, n, click); only && text != "" {
				o := &onode{role: "generic", line: "generic " + strconv.Quote(text) + " [clickable]"}
				o.ref = bd.ref(t, n)
				o.line += " [ref=" + o.ref + "]"
				return []*onode{o}
			}
		}
		return bd.kids(t, n, ctxName)
	}
	name := normal(axString(n.Name))
	if role == "text" {
		if name == "" || name == ctxName {
			return nil
		}
		return []*onode{{line: "text: " + name, text: true}}
	}
	o := &onode{role: role, fold: folded[role]}
	var sb strings.Builder
	sb.WriteString(role)
	text, only := bd.textOf(t, n, click)
	switch {
	case interactive[role]:
		if name != "" {
			sb.WriteString(" " + strconv.Quote(name))
		}
	case only && text != "" && name == text:
		// A heading of text: its text is its name.
		sb.WriteString(" " + strconv.Quote(name))
		text = ""
	case only && text != "" && name == "":
		// A paragraph, a cell, a list item of text: one line.
	case name != "" && name != text:
		sb.WriteString(" " + strconv.Quote(name))
	}
	if v := axString(n.Value); v != "" && interactive[role] {
		if isSecretField(n) {
			v = "••••"
		}
		sb.WriteString(": " + strconv.Quote(v))
	}
	props := map[string]string{}
	for _, p := range n.Properties {
		props[string(p.Name)] = axString(p.Value)
	}
	for _, k := range shownProps {
		if k == "level" && role != "heading" {
			continue // a list item's depth says nothing new
		}
		v, ok := props[k]
		switch {
		case !ok || v == "false" || v == "":
		case v == "true":
			sb.WriteString(" [" + k + "]")
		default:
			sb.WriteString(" [" + k + "=" + v + "]")
		}
	}
	if interactive[role] || referable[role] || click[n.BackendDOMNodeID] {
		if o.ref = bd.ref(t, n); o.ref != "" {
			sb.WriteString(" [ref=" + o.ref + "]")
		}
	}
	if role == "link" {
		if u := props["url"]; u != "" {
			sb.WriteString(" " + bd.short(u))
		}
	}
	switch {
	case role == "iframe":
		o.kids = bd.iframe(t, n)
	case only && text == "" && o.ref == "" && name == "" && !interactive[role]:
		// An empty paragraph or box says nothing.
		return nil
	case interactive[role] && only:
		// Its text is its name.
	case only && text != "":
		sb.WriteString(": " + text)
	default:
		o.kids = bd.kids(t, n, name)
	}
	o.line = sb.String()
	return []*onode{o}
}

// short is a link's address, its origin left out when it is the page's.
func (bd *builder) short(u string) string {
	if bd.origin != "" && strings.HasPrefix(u, bd.origin+"/") {
		return "-> " + strings.TrimPrefix(u, bd.origin)
	}
	return "-> " + u
}

// iframe reads the frame's own tree under its line, in the tab's process
// or, for a frame in a process of its own, through that frame's target.
func (bd *builder) iframe(t *axTree, n *proto.AccessibilityAXNode) []*onode {
	if bd.frames >= maxFrames || n.BackendDOMNodeID == 0 {
		return nil
	}
	bd.frames++
	session := bd.session(t)
	d, err := proto.DOMDescribeNode{BackendNodeID: n.BackendDOMNodeID}.Call(session)
	if err != nil || d.Node.FrameID == "" {
		return nil
	}
	if kids, err := bd.frame(session, t.page, d.Node.FrameID); err == nil {
		return kids
	}
	own, err := bd.b.b.PageFromTarget(proto.TargetTargetID(d.Node.FrameID))
	if err != nil {
		return []*onode{{line: "text: (this frame could not be read: " + err.Error() + ")", text: true}}
	}
	kids, err := bd.frame(own.Context(bd.ctx), own, "")
	if err != nil {
		return []*onode{{line: "text: (this frame could not be read: " + err.Error() + ")", text: true}}
	}
	return kids
}

// isSecretField: a password box's value is never shown.
func isSecretField(n *proto.AccessibilityAXNode) bool {
	for _, p := range n.Properties {
		if p.Name == "protected" && axString(p.Value) == "true" {
			return true
		}
	}
	return false
}

// find looks through the whole page, every frame's included and nothing
// folded, for lines holding some text or of some role, and answers each
// with the lines above it that say where it is.
func (b *Browser) find(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		Text  string `json:"text"`
		Role  string `json:"role"`
		Limit int    `json:"limit"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.Text == "" && a.Role == "" {
		return nil, errcode.New(errcode.BadArgs, "find needs text, a role, or both")
	}
	if a.Limit <= 0 {
		a.Limit = 20
	}
	a.Limit = min(a.Limit, 200)
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	if b.openDialog() != nil {
		return nil, errcode.New(errcode.DialogOpen, "a dialog is open; answer it with browser.dialog")
	}
	roots, err := b.outline(ctx, p)
	if err != nil {
		return nil, err
	}
	type match struct {
		Line  string   `json:"line"`
		Ref   string   `json:"ref,omitempty"`
		Where []string `json:"where,omitempty"`
	}
	matches := []match{}
	total := 0
	want := strings.ToLower(a.Text)
	var walk func(list []*onode, path []string)
	walk = func(list []*onode, path []string) {
		for _, n := range list {
			if n.role == "moved" {
				continue
			}
			hit := (a.Role == "" || n.role == a.Role || (a.Role == "text" && n.text)) && (want == "" || strings.Contains(strings.ToLower(n.line), want))
			if hit {
				total++
				if len(matches) < a.Limit {
					where := path
					if len(where) > 3 {
						where = where[len(where)-3:]
					}
					matches = append(matches, match{Line: n.line, Ref: n.ref, Where: append([]string(nil), where...)})
				}
			}
			walk(n.kids, append(path, n.line))
		}
	}
	walk(roots, nil)
	return devicectl.JSONResult(struct {
		pageState
		Matches []match `json:"matches"`
		Total   int     `json:"total"`
	}{state(p), matches, total})
}
