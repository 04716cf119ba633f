package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"strings"

	"github.com/sendid/sendid/internal/version"
)

func init() {
	register(&command{name: "version", summary: "print sendidctl's version and Go version", setup: setupVersion})
	register(&command{name: "completion", args: "bash|zsh",
		summary: "print a shell completion script: source <(sendidctl completion bash)", setup: setupCompletion})
}

func setupVersion(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	return func(ctx context.Context, pos []string) error {
		if len(pos) > 0 {
			return fmt.Errorf("%w: version takes no arguments", errUsage)
		}
		if e.conn.json {
			printJSON(e.stdout, map[string]string{"version": version.String(), "go": version.Go()})
			return nil
		}
		fmt.Fprintf(e.stdout, "sendidctl %s (%s)\n", version.String(), version.Go())
		return nil
	}
}

func setupCompletion(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	return func(ctx context.Context, pos []string) error {
		if len(pos) != 1 {
			return fmt.Errorf("%w: completion takes bash or zsh", errUsage)
		}
		switch pos[0] {
		case "bash":
			fmt.Fprint(e.stdout, completionScript(bashCompletion))
		case "zsh":
			fmt.Fprint(e.stdout, completionScript(zshCompletion))
		default:
			return fmt.Errorf("%w: completion for %q: there is bash and zsh", errUsage, pos[0])
		}
		return nil
	}
}

// completionScript fills a template with the commands and their flags, so
// completion follows the command table.
func completionScript(tmpl string) string {
	names := append(commandNames(), "help")
	sort.Strings(names)
	var cases, valued strings.Builder
	seenValued := map[string]bool{}
	for _, n := range commandNames() {
		fs, _ := newFlagSet(commands[n], &env{getenv: func(string) string { return "" }})
		var flags []string
		fs.VisitAll(func(f *flag.Flag) {
			dash := "--"
			if len(f.Name) == 1 {
				dash = "-"
			}
			flags = append(flags, dash+f.Name)
			if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); !(ok && bf.IsBoolFlag()) && !seenValued[f.Name] {
				seenValued[f.Name] = true
				fmt.Fprintf(&valued, "|%s%s", dash, f.Name)
			}
		})
		fmt.Fprintf(&cases, "    %s) flags=%q ;;\n", n, strings.Join(flags, " "))
	}
	global := strings.Join(connFlagNames(), " ")
	r := strings.NewReplacer("@COMMANDS@", strings.Join(names, " "), "@CASES@", cases.String(),
		"@VALUED@", strings.TrimPrefix(valued.String(), "|"), "@GLOBAL@", global)
	return r.Replace(tmpl)
}

func connFlagNames() []string {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	addConnFlags(fs)
	var out []string
	fs.VisitAll(func(f *flag.Flag) {
		if len(f.Name) == 1 {
			out = append(out, "-"+f.Name)
		} else {
			out = append(out, "--"+f.Name)
		}
	})
	return out
}

const bashCompletion = `# bash completion for sendidctl: source <(sendidctl completion bash)
_sendidctl() {
  local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
  local cmd="" sub="" i w
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="${COMP_WORDS[i]}"
    case "$w" in
      @VALUED@) ((i++)) ;;
      -*) ;;
      *) if [[ -z "$cmd" ]]; then cmd="$w"; elif [[ -z "$sub" ]]; then sub="$w"; fi ;;
    esac
  done
  case "$prev" in
    --context)
      local dir="${XDG_CONFIG_HOME:-$HOME/.config}/nats/context" names=() f
      for f in "$dir"/*.json; do [[ -e "$f" ]] && names+=("$(basename "$f" .json)"); done
      COMPREPLY=($(compgen -W "${names[*]}" -- "$cur")); return ;;
    --config|--creds|--nkey|--tlscert|--tlskey|--tlsca)
      COMPREPLY=($(compgen -f -- "$cur")); return ;;
    @VALUED@) return ;;
  esac
  local flags="@GLOBAL@"
  case "$cmd" in
@CASES@  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$flags" -- "$cur")); return
  fi
  case "$cmd" in
    "") COMPREPLY=($(compgen -W "@COMMANDS@" -- "$cur")) ;;
    help) [[ -z "$sub" ]] && COMPREPLY=($(compgen -W "@COMMANDS@" -- "$cur")) ;;
    dead) [[ -z "$sub" ]] && COMPREPLY=($(compgen -W "ls replay rm" -- "$cur")) ;;
    completion) [[ -z "$sub" ]] && COMPREPLY=($(compgen -W "bash zsh" -- "$cur")) ;;
  esac
}
complete -F _sendidctl sendidctl
`

const zshCompletion = `#compdef sendidctl
# zsh completion for sendidctl: source <(sendidctl completion zsh), or save
# it as _sendidctl in a directory of $fpath.
_sendidctl() {
  local cur="${words[CURRENT]}" prev="${words[CURRENT-1]}"
  local cmd="" sub="" i w
  for ((i = 2; i < CURRENT; i++)); do
    w="${words[i]}"
    case "$w" in
      @VALUED@) ((i++)) ;;
      -*) ;;
      *) if [[ -z "$cmd" ]]; then cmd="$w"; elif [[ -z "$sub" ]]; then sub="$w"; fi ;;
    esac
  done
  case "$prev" in
    --context)
      local dir="${XDG_CONFIG_HOME:-$HOME/.config}/nats/context"
      compadd -- ${dir}/*.json(N:t:r); return ;;
    --config|--creds|--nkey|--tlscert|--tlskey|--tlsca)
      _files; return ;;
    @VALUED@) return ;;
  esac
  local flags="@GLOBAL@"
  case "$cmd" in
@CASES@  esac
  if [[ "$cur" == -* ]]; then
    compadd -- ${=flags}; return
  fi
  case "$cmd" in
    "") compadd -- @COMMANDS@ ;;
    help) [[ -z "$sub" ]] && compadd -- @COMMANDS@ ;;
    dead) [[ -z "$sub" ]] && compadd -- ls replay rm ;;
    completion) [[ -z "$sub" ]] && compadd -- bash zsh ;;
  esac
}
if [[ "${funcstack[1]}" == _sendidctl ]]; then _sendidctl "$@"; else compdef _sendidctl sendidctl; fi
`
