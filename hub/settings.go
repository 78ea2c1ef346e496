package hub

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/lowkeyhq/lowkey/errcode"
	"github.com/lowkeyhq/lowkey/pairing"
	"github.com/lowkeyhq/lowkey/sessions/agent"
)

// memberChoices are the agents an owner may let members start a
// conversation with: the box's own and the presets (programs the box
// knows), never exec: (any program, the owner's choice alone).
var memberChoices = append([]string{"builtin", "openai"}, agent.PresetNames()...)

// Settings are the owner's choices the web app edits.
type Settings struct {
	// MemberAgents are the agents members may start a conversation with.
	MemberAgents []string `json:"member_agents"`
	// Instructions are the owner's standing instructions to agents, ""
	// for the box's own (DefaultInstructions).
	Instructions        string `json:"instructions"`
	DefaultInstructions string `json:"default_instructions"`
}

const memberAgentsKey = "settings/member-agents"

// memberAgents are the agents members may choose now (all of
// memberChoices until the owner says otherwise).
func (h *Hub) memberAgents() ([]string, error) {
	var list []string
	err := h.store.Get(memberAgentsKey, &list)
	if errors.Is(err, ErrNotFound) {
		return slices.Clone(memberChoices), nil
	}
	return list, err
}

func (h *Hub) getSettings(w http.ResponseWriter, r *http.Request) {
	list, err := h.memberAgents()
	if err != nil {
		fail(w, errcode.Internal, "could not read the settings: "+err.Error())
		return
	}
	text, _ := h.instructions()
	writeJSON(w, http.StatusOK, Settings{MemberAgents: list, Instructions: text, DefaultInstructions: agent.Standing})
}

// putSettings changes what is given; a field left out stays as it is.
func (h *Hub) putSettings(w http.ResponseWriter, r *http.Request) {
	var req struct {
		MemberAgents *[]string `json:"member_agents"`
		Instructions *string   `json:"instructions"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.MemberAgents != nil {
		list := []string{}
		for _, a := range *req.MemberAgents {
			if !slices.Contains(memberChoices, a) {
				fail(w, errcode.BadRequest, fmt.Sprintf("members may be given %v, not %s", memberChoices, strconv.Quote(a)))
				return
			}
			if !slices.Contains(list, a) {
				list = append(list, a)
			}
		}
		if err := h.store.Put(memberAgentsKey, list); err != nil {
			fail(w, errcode.Internal, "could not save the settings: "+err.Error())
			return
		}
		h.log.Info("agents members may choose changed", "agents", list, "by", who(r))
	}
	if req.Instructions != nil {
		if err := h.setInstructions(*req.Instructions); err != nil {
			writeError(w, err)
			return
		}
		h.log.Info("standing instructions to agents changed", "bytes", len(*req.Instructions), "by", who(r))
	}
	h.changed(SettingsChanged)
	h.getSettings(w, r)
}

// setInstructions replaces the owner's instructions file whole ("" removes
// it: the box's own apply again); its errors carry their code.
func (h *Hub) setInstructions(text string) error {
	path := filepath.Join(h.cfg.DataDir, instructionsFile)
	if text == "" {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return errcode.Wrap(errcode.Internal, err, "could not save the instructions")
		}
		return nil
	}
	if len(text) > maxInstructions {
		return errcode.New(errcode.BadRequest, "the instructions are over 64 KiB")
	}
	if err := pairing.WriteFileAtomic(path, []byte(text)); err != nil {
		return errcode.Wrap(errcode.Internal, err, "could not save the instructions")
	}
	return nil
}
