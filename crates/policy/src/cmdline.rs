//! Reading an SSH `exec` command line the way a POSIX shell on the host would split it,
//! far enough to match rules on it: words, quoting, and the shell syntax that could
//! make one command line run several commands or change what a command touches.

use serde::{Deserialize, Serialize};

/// One simple command of a command line: its words with quoting removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimpleCommand {
    /// The words, unquoted (`argv`); `argv[0]` is the program.
    pub words: Vec<String>,
}

impl SimpleCommand {
    /// The program (`argv[0]`), if any.
    pub fn program(&self) -> Option<&str> {
        self.words.first().map(String::as_str)
    }
}

/// What a command line holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandLine {
    /// The simple commands, in order: one for a plain command line, several when
    /// control operators or substitutions join them.
    pub commands: Vec<SimpleCommand>,
    /// The shell syntax found outside single quotes: control operators (`;`, `&`,
    /// `&&`, `||`, `|`, newline), subshells and substitutions (`(`, `$(`, backticks),
    /// redirections (`<`, `>`), and parameter expansion (`$NAME`, `${...}`). Empty for
    /// a plain command line.
    pub syntax: Vec<String>,
    /// Why the line could not be read (an unterminated quote or substitution).
    pub error: Option<String>,
}

impl CommandLine {
    /// Whether the line uses any shell syntax beyond words and quoting.
    pub fn has_syntax(&self) -> bool {
        !self.syntax.is_empty()
    }
}

/// Splits `line` into simple commands and notes its shell syntax.
///
/// Quoting follows POSIX: single quotes keep everything literally, double quotes keep
/// everything but `$`, backticks and backslash escapes, a backslash outside quotes
/// escapes the next character. Substitutions (`$(...)`, backticks) are split out as
/// commands of their own, so a rule sees what they would run.
pub fn parse_command_line(line: &str) -> CommandLine {
    let mut out = CommandLine::default();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let mut depth = 0usize; // open `(` / `$(`
    let mut in_backtick = false;
    let note = |out: &mut CommandLine, s: &str| {
        if !out.syntax.iter().any(|x| x == s) {
            out.syntax.push(s.to_string());
        }
    };
    fn end_word(words: &mut Vec<String>, word: &mut String, in_word: &mut bool) {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    }
    fn end_command(out: &mut CommandLine, words: &mut Vec<String>) {
        if !words.is_empty() {
            out.commands.push(SimpleCommand {
                words: std::mem::take(words),
            });
        }
    }
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                let mut closed = false;
                for q in chars.by_ref() {
                    if q == '\'' {
                        closed = true;
                        break;
                    }
                    word.push(q);
                }
                if !closed {
                    out.error = Some("unterminated single quote".into());
                }
            }
            '"' => {
                in_word = true;
                let mut closed = false;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.peek() {
                            Some(&n @ ('$' | '`' | '"' | '\\' | '\n')) => {
                                chars.next();
                                if n != '\n' {
                                    word.push(n);
                                }
                            }
                            _ => word.push('\\'),
                        },
                        '$' => {
                            // Expansion and substitution happen inside double quotes too;
                            // the text stays in the word, the syntax is noted.
                            match chars.peek() {
                                Some('(') => note(&mut out, "$("),
                                Some(n) if n.is_alphanumeric() || "{_@*#?!$-".contains(*n) => {
                                    note(&mut out, "$")
                                }
                                _ => {}
                            }
                            word.push('$');
                        }
                        '`' => {
                            note(&mut out, "`");
                            word.push('`');
                        }
                        other => word.push(other),
                    }
                }
                if !closed {
                    out.error = Some("unterminated double quote".into());
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(n) => word.push(n),
                }
            }
            ' ' | '\t' => end_word(&mut words, &mut word, &mut in_word),
            '\n' | ';' | '&' | '|' => {
                end_word(&mut words, &mut word, &mut in_word);
                let op = match (c, chars.peek()) {
                    ('&', Some('&')) => {
                        chars.next();
                        "&&"
                    }
                    ('|', Some('|')) => {
                        chars.next();
                        "||"
                    }
                    ('\n', _) => "newline",
                    (';', _) => ";",
                    ('&', _) => "&",
                    _ => "|",
                };
                note(&mut out, op);
                end_command(&mut out, &mut words);
            }
            '(' => {
                end_word(&mut words, &mut word, &mut in_word);
                note(&mut out, "(");
                end_command(&mut out, &mut words);
                depth += 1;
            }
            ')' => {
                end_word(&mut words, &mut word, &mut in_word);
                note(&mut out, ")");
                end_command(&mut out, &mut words);
                depth = depth.saturating_sub(1);
            }
            '`' => {
                end_word(&mut words, &mut word, &mut in_word);
                note(&mut out, "`");
                end_command(&mut out, &mut words);
                in_backtick = !in_backtick;
            }
            '$' => match chars.peek() {
                Some('(') => {
                    chars.next();
                    end_word(&mut words, &mut word, &mut in_word);
                    note(&mut out, "$(");
                    end_command(&mut out, &mut words);
                    depth += 1;
                }
                Some(n) if n.is_alphanumeric() || "{_@*#?!$-".contains(*n) => {
                    note(&mut out, "$");
                    in_word = true;
                    word.push('$');
                }
                _ => {
                    in_word = true;
                    word.push('$');
                }
            },
            '<' | '>' => {
                end_word(&mut words, &mut word, &mut in_word);
                note(&mut out, if c == '<' { "<" } else { ">" });
                // The redirection stays visible to rules as a word of its own.
                words.push(c.to_string());
            }
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    end_word(&mut words, &mut word, &mut in_word);
    end_command(&mut out, &mut words);
    if out.error.is_none() {
        if in_backtick {
            out.error = Some("unterminated backtick substitution".into());
        } else if depth > 0 {
            out.error = Some("unterminated `(` or `$(`".into());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn words(line: &str) -> Vec<Vec<String>> {
        parse_command_line(line)
            .commands
            .into_iter()
            .map(|c| c.words)
            .collect()
    }

    #[test]
    fn plain_and_quoted_words() {
        let l = parse_command_line("systemctl  status 'nginx x' \"a\\\"b\" c\\ d");
        assert!(!l.has_syntax(), "{l:?}");
        assert_eq!(
            words("systemctl  status 'nginx x' \"a\\\"b\" c\\ d"),
            vec![vec!["systemctl", "status", "nginx x", "a\"b", "c d"]]
        );
    }

    #[test]
    fn control_operators_split_commands() {
        let l = parse_command_line("systemctl status x; rm -rf /");
        assert_eq!(l.syntax, vec![";"]);
        assert_eq!(l.commands.len(), 2);
        assert_eq!(l.commands[1].words, vec!["rm", "-rf", "/"]);
        for line in [
            "a && b", "a || b", "a | b", "a & b", "a\nb", "a $(b)", "a `b`", "(a) ; b",
        ] {
            let l = parse_command_line(line);
            assert!(l.has_syntax(), "{line}");
            assert!(
                l.commands.iter().any(|c| c.program() == Some("b")),
                "{line}: {l:?}"
            );
        }
    }

    #[test]
    fn quoted_operators_are_words() {
        let l = parse_command_line("echo 'a; b' \"c | d\"");
        assert!(!l.has_syntax(), "{l:?}");
        assert_eq!(l.commands[0].words, vec!["echo", "a; b", "c | d"]);
    }

    #[test]
    fn expansions_and_redirections_are_syntax() {
        assert!(parse_command_line("cat $HOME/x").has_syntax());
        assert!(parse_command_line("cat \"$(id)\"").has_syntax());
        assert!(parse_command_line("cat a > b").has_syntax());
        assert!(!parse_command_line("echo '$HOME' cost\\$5").has_syntax());
    }

    #[test]
    fn unterminated_quotes_are_errors() {
        assert!(parse_command_line("echo 'a").error.is_some());
        assert!(parse_command_line("echo $(a").error.is_some());
        assert!(parse_command_line("echo `a").error.is_some());
    }
}
