#!/usr/bin/env bash
# Kaldi-style option parsing; source it after setting the defaults of a script's variables.
#   --foo-bar value  or  --foo-bar=value  sets $foo_bar (the variable must already exist)
#   --config file    sources file (shell assignments) before later options
#   --help / -h      prints $help_message and exits 0
# An unknown option, or a value missing (at the end, or before another option), is an error. A variable
# whose default is true/false only takes true or false. Positional arguments are left in "$@".
__parse_die() { echo "$0: $*" >&2; [ -n "${help_message:-}" ] && echo "$help_message" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      echo "${help_message:-$0: no help message}"; exit 0 ;;
    --config=*|--config)
      if [ "$1" = --config ]; then [ $# -ge 2 ] || __parse_die "missing value for --config"; __cfg=$2; shift 2
      else __cfg=${1#--config=}; shift; fi
      [ -r "$__cfg" ] || __parse_die "cannot read config file $__cfg"
      # A CR would end each value it sets (nj=4<CR>), which fails far from here, or not at all.
      ! grep -q $'\r' "$__cfg" || __parse_die "config file $__cfg has Windows line ends (CRLF); convert it: sed -i 's/\r\$//' $__cfg"
      # shellcheck disable=SC1090
      . "$__cfg" || __parse_die "error in config file $__cfg" ;;
    --*=*|--*)
      __arg=${1#--}
      if [[ "$__arg" == *=* ]]; then __name=${__arg%%=*}; __value=${__arg#*=}; shift
      else
        __name=$__arg; [ $# -ge 2 ] || __parse_die "missing value for --$__name"; __value=$2; shift 2
        # --nj --stage 3: the value left out, the next option taken for it (--nj=--x sets it, if ever meant)
        if [[ "$__value" =~ ^--([A-Za-z][A-Za-z0-9-]*)$ ]]; then
          eval "__set=\${${BASH_REMATCH[1]//-/_}+set}"
          [ "$__set" != set ] || __parse_die "missing value for --$__name (the next word is the option $__value)"
        fi
      fi
      __var=${__name//-/_}
      [[ "$__var" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || __parse_die "invalid option --$__name"
      eval "__set=\${$__var+set}"
      [ "$__set" = set ] || __parse_die "invalid option --$__name"
      eval "__old=\$$__var"
      if [ "$__old" = true ] || [ "$__old" = false ]; then
        [ "$__value" = true ] || [ "$__value" = false ] || __parse_die "--$__name takes true or false, not '$__value'"
      fi
      printf -v "$__var" '%s' "$__value" ;;
    *) break ;;
  esac
done
unset __arg __name __value __var __set __old __cfg
true
