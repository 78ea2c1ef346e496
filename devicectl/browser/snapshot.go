package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-rod/rod/lib/proto"

	"github.com/lowkeyhq/lowkey/devicectl"
)

// Snapshot sizes, in characters of the rendered tree. The default keeps a
// page to a few thousand tokens; the hard cap holds whatever is asked.
const (
	DefaultSnapshotChars = 12000
	MaxSnapshotChars     = 100000
)

// Roles that only group others: their children are shown in their place.
var transparent = map[string]bool{
	"generic": true, "none": true, "presentation": true, "LineBreak": true,
	"InlineTextBox": true, "LayoutTable": true, "LayoutTableRow": true, "LayoutTableCell": true,
}

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

func (b *Browser) snapshot(ctx context.Context, args json.RawMessage) (*devicectl.Result, error) {
	var a struct {
		MaxChars int `json:"max_chars"`
	}
	if err := devicectl.DecodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.MaxChars <= 0 {
		a.MaxChars = DefaultSnapshotChars
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
	tree, err := proto.AccessibilityGetFullAXTree{}.Call(p)
	if err != nil {
		return nil, err
	}
	byID := make(map[proto.AccessibilityAXNodeID]*proto.AccessibilityAXNode, len(tree.Nodes))
	for _, n := range tree.Nodes {
		byID[n.NodeID] = n
	}
	r := renderer{byID: byID, limit: a.MaxChars, refs: map[string]proto.DOMBackendNodeID{}}
	if len(tree.Nodes) > 0 {
		r.walk(tree.Nodes[0], 0, "")
	}
	b.refs, b.refPage = r.refs, p.TargetID
	out := struct {
		pageState
		Snapshot  string `json:"snapshot"`
		Refs      int    `json:"refs"`
		Truncated bool   `json:"truncated"`
		Omitted   int    `json:"omitted_nodes,omitempty"`
	}{st, r.sb.String(), len(r.refs), r.omitted > 0, r.omitted}
	if r.omitted > 0 {
		out.Snapshot += fmt.Sprintf("- (snapshot cut at %d characters: %d more elements; scroll, or ask for a larger max_chars up to %d)\n", a.MaxChars, r.omitted, MaxSnapshotChars)
	}
	return devicectl.JSONResult(out)
}

type renderer struct {
	byID    map[proto.AccessibilityAXNodeID]*proto.AccessibilityAXNode
	sb      strings.Builder
	limit   int
	omitted int
	refs    map[string]proto.DOMBackendNodeID
	next    int
}

func (r *renderer) walk(n *proto.AccessibilityAXNode, depth int, parentName string) {
	role := axString(n.Role)
	name := strings.TrimSpace(axString(n.Name))
	show := !n.Ignored && !(transparent[role] && name == "")
	if role == "StaticText" && (name == "" || name == parentName) {
		show = false
	}
	if role == "InlineTextBox" {
		return // repeats its text node
	}
	childDepth := depth
	if show {
		line, ref := r.line(n, role, name, depth)
		if r.sb.Len()+len(line) > r.limit {
			r.omitted++
			delete(r.refs, ref)
		} else {
			r.sb.WriteString(line)
		}
		childDepth = depth + 1
		parentName = name
	}
	for _, id := range n.ChildIDs {
		if c := r.byID[id]; c != nil {
			r.walk(c, childDepth, parentName)
		}
	}
}

func (r *renderer) line(n *proto.AccessibilityAXNode, role, name string, depth int) (string, string) {
	var sb strings.Builder
	sb.WriteString(strings.Repeat("  ", depth))
	sb.WriteString("- ")
	switch role {
	case "RootWebArea":
		role = "document"
	case "StaticText":
		role = "text"
	}
	sb.WriteString(role)
	if name != "" {
		sb.WriteString(" " + strconv.Quote(truncate(name, 200)))
	}
	if v := axString(n.Value); v != "" && role != "text" {
		if isSecretField(n) {
			v = "••••"
		}
		sb.WriteString(": " + strconv.Quote(truncate(v, 200)))
	}
	props := map[string]string{}
	for _, p := range n.Properties {
		props[string(p.Name)] = axString(p.Value)
	}
	for _, k := range shownProps {
		v, ok := props[k]
		switch {
		case !ok || v == "false" || v == "":
		case v == "true":
			sb.WriteString(" [" + k + "]")
		default:
			sb.WriteString(" [" + k + "=" + v + "]")
		}
	}
	ref := ""
	if n.BackendDOMNodeID != 0 && role != "text" {
		r.next++
		ref = "e" + strconv.Itoa(r.next)
		r.refs[ref] = n.BackendDOMNodeID
		sb.WriteString(" [ref=" + ref + "]")
	}
	sb.WriteString("\n")
	return sb.String(), ref
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

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
