// Editor support and a first program for each language hearth offers
// (crates/hearth-sandbox/languages.toml). Grammars load on demand (esbuild splits each into
// its own chunk), so the page starts with none but the one in use.
//
// Approximations, where CodeMirror has no mode of the language: Nim uses the Python mode,
// AWK the C-like one, Elixir the Ruby one, Prolog the Erlang one (Erlang's syntax comes from
// Prolog's), and NASM a small mode of its own (below).

import type { Extension } from "@codemirror/state";
import { StreamLanguage, type StreamParser } from "@codemirror/language";

type Loader = () => Promise<Extension>;

const legacy = (p: Promise<StreamParser<unknown>>): Promise<Extension> => p.then((parser) => StreamLanguage.define(parser));

/** NASM: `;` comments, strings, numbers, registers, directives and labels. */
const nasm: StreamParser<unknown> = {
  name: "nasm",
  token(stream) {
    if (stream.eatSpace()) return null;
    if (stream.eat(";")) {
      stream.skipToEnd();
      return "comment";
    }
    if (stream.match(/^(["'`])(?:[^\\]|\\.)*?\1/)) return "string";
    if (stream.match(/^(?:0x[0-9a-f]+|[0-9][0-9a-f]*h|[0-9]+)\b/i)) return "number";
    if (stream.match(/^\.?[A-Za-z_][\w.]*:/)) return "labelName";
    if (stream.match(/^(?:[re]?[abcd]x|[abcd][lh]|[re]?(?:si|di|sp|bp)|[sd]il|[bs]pl|r(?:[89]|1[0-5])[dwb]?|rip)\b/i)) return "variableName.special";
    if (stream.match(/^(?:section|segment|global|extern|bits|default|rel|byte|word|dword|qword|res[bwdq]|d[bwdq]|equ|times)\b/i)) return "keyword";
    if (stream.match(/^[A-Za-z_.][\w.]*/)) return "variableName";
    stream.next();
    return null;
  },
};

const loaders: Record<string, Loader> = {
  python: () => import("@codemirror/lang-python").then((m) => m.python()),
  javascript: () => import("@codemirror/lang-javascript").then((m) => m.javascript()),
  typescript: () => import("@codemirror/lang-javascript").then((m) => m.javascript({ typescript: true })),
  c: () => import("@codemirror/lang-cpp").then((m) => m.cpp()),
  cpp: () => import("@codemirror/lang-cpp").then((m) => m.cpp()),
  rust: () => import("@codemirror/lang-rust").then((m) => m.rust()),
  go: () => import("@codemirror/lang-go").then((m) => m.go()),
  java: () => import("@codemirror/lang-java").then((m) => m.java()),
  php: () => import("@codemirror/lang-php").then((m) => m.php()),
  sql: () => import("@codemirror/lang-sql").then((m) => m.sql({ dialect: m.SQLite })),
  bash: () => legacy(import("@codemirror/legacy-modes/mode/shell").then((m) => m.shell)),
  scala: () => legacy(import("@codemirror/legacy-modes/mode/clike").then((m) => m.scala)),
  csharp: () => legacy(import("@codemirror/legacy-modes/mode/clike").then((m) => m.csharp)),
  awk: () => legacy(import("@codemirror/legacy-modes/mode/clike").then((m) => m.c)),
  ruby: () => legacy(import("@codemirror/legacy-modes/mode/ruby").then((m) => m.ruby)),
  elixir: () => legacy(import("@codemirror/legacy-modes/mode/ruby").then((m) => m.ruby)),
  perl: () => legacy(import("@codemirror/legacy-modes/mode/perl").then((m) => m.perl)),
  lua: () => legacy(import("@codemirror/legacy-modes/mode/lua").then((m) => m.lua)),
  haskell: () => legacy(import("@codemirror/legacy-modes/mode/haskell").then((m) => m.haskell)),
  ocaml: () => legacy(import("@codemirror/legacy-modes/mode/mllike").then((m) => m.oCaml)),
  r: () => legacy(import("@codemirror/legacy-modes/mode/r").then((m) => m.r)),
  fortran: () => legacy(import("@codemirror/legacy-modes/mode/fortran").then((m) => m.fortran)),
  pascal: () => legacy(import("@codemirror/legacy-modes/mode/pascal").then((m) => m.pascal)),
  nim: () => legacy(import("@codemirror/legacy-modes/mode/python").then((m) => m.python)),
  scheme: () => legacy(import("@codemirror/legacy-modes/mode/scheme").then((m) => m.scheme)),
  tcl: () => legacy(import("@codemirror/legacy-modes/mode/tcl").then((m) => m.tcl)),
  lisp: () => legacy(import("@codemirror/legacy-modes/mode/commonlisp").then((m) => m.commonLisp)),
  erlang: () => legacy(import("@codemirror/legacy-modes/mode/erlang").then((m) => m.erlang)),
  prolog: () => legacy(import("@codemirror/legacy-modes/mode/erlang").then((m) => m.erlang)),
  cobol: () => legacy(import("@codemirror/legacy-modes/mode/cobol").then((m) => m.cobol)),
  assembly: () => Promise.resolve(StreamLanguage.define(nasm)),
};

/** The editor extension for language `id` (none for a language without a mode). */
export async function languageSupport(id: string): Promise<Extension> {
  const load = loaders[id];
  return load ? load() : [];
}

/** True when the editor highlights `id`. */
export function isHighlighted(id: string): boolean {
  return id in loaders;
}

/** A first program per language: prints a greeting, then reads a name from stdin. */
export const samples: Record<string, string> = {
  python: 'name = input("Your name? ")\nprint(f"Hello, {name}!")\n',
  javascript:
    'const readline = require("readline");\nconst rl = readline.createInterface({ input: process.stdin });\nprocess.stdout.write("Your name? ");\nrl.once("line", (name) => {\n  console.log(`Hello, ${name}!`);\n  rl.close();\n});\n',
  typescript:
    'import * as fs from "fs";\nconst name: string = fs.readFileSync(0, "utf8").trim();\nconsole.log(`Hello, ${name || "world"}!`);\n',
  bash: 'read -r -p "Your name? " name\necho "Hello, $name!"\n',
  c: '#include <stdio.h>\n\nint main(void) {\n    char name[100] = "world";\n    printf("Your name? ");\n    fflush(stdout);\n    if (scanf("%99s", name) != 1) return 1;\n    printf("Hello, %s!\\n", name);\n    return 0;\n}\n',
  cpp: '#include <iostream>\n#include <string>\n\nint main() {\n    std::string name;\n    std::cout << "Your name? " << std::flush;\n    std::getline(std::cin, name);\n    std::cout << "Hello, " << name << "!\\n";\n}\n',
  rust: 'use std::io::{self, BufRead, Write};\n\nfn main() {\n    print!("Your name? ");\n    io::stdout().flush().unwrap();\n    let mut name = String::new();\n    io::stdin().lock().read_line(&mut name).unwrap();\n    println!("Hello, {}!", name.trim());\n}\n',
  go: 'package main\n\nimport (\n\t"bufio"\n\t"fmt"\n\t"os"\n\t"strings"\n)\n\nfunc main() {\n\tfmt.Print("Your name? ")\n\tname, _ := bufio.NewReader(os.Stdin).ReadString(\'\\n\')\n\tfmt.Printf("Hello, %s!\\n", strings.TrimSpace(name))\n}\n',
  java: 'import java.util.Scanner;\n\npublic class Main {\n    public static void main(String[] args) {\n        System.out.print("Your name? ");\n        System.out.flush();\n        String name = new Scanner(System.in).nextLine();\n        System.out.println("Hello, " + name + "!");\n    }\n}\n',
  scala: 'object Main {\n  def main(args: Array[String]): Unit = {\n    print("Your name? ")\n    val name = scala.io.StdIn.readLine()\n    println(s"Hello, $name!")\n  }\n}\n',
  csharp: 'using System;\n\nclass Program {\n    static void Main() {\n        Console.Write("Your name? ");\n        var name = Console.ReadLine();\n        Console.WriteLine($"Hello, {name}!");\n    }\n}\n',
  ruby: 'print "Your name? "\n$stdout.flush\nname = gets.to_s.strip\nputs "Hello, #{name}!"\n',
  php: '<?php\necho "Your name? ";\n$name = trim(fgets(STDIN));\necho "Hello, $name!\\n";\n',
  perl: 'use strict;\nuse warnings;\n$| = 1;\nprint "Your name? ";\nmy $name = <STDIN>;\nchomp $name;\nprint "Hello, $name!\\n";\n',
  lua: 'io.write("Your name? ")\nio.flush()\nlocal name = io.read("l")\nprint("Hello, " .. name .. "!")\n',
  haskell: 'import System.IO\n\nmain :: IO ()\nmain = do\n  putStr "Your name? "\n  hFlush stdout\n  name <- getLine\n  putStrLn ("Hello, " ++ name ++ "!")\n',
  ocaml: 'let () =\n  print_string "Your name? ";\n  flush stdout;\n  let name = input_line stdin in\n  Printf.printf "Hello, %s!\\n" name\n',
  r: 'cat("Your name? ")\nname <- readLines(file("stdin"), n = 1)\ncat("Hello, ", name, "!\\n", sep = "")\n',
  sql: "CREATE TABLE greeting(word TEXT);\nINSERT INTO greeting VALUES ('Hello'), ('hearth');\nSELECT group_concat(word, ', ') || '!' FROM greeting;\n",
  fortran: "program main\n  implicit none\n  character(len=100) :: name\n  write(*, '(A)', advance='no') 'Your name? '\n  read(*, '(A)') name\n  print '(3A)', 'Hello, ', trim(name), '!'\nend program main\n",
  pascal: "program Main;\nvar name: string;\nbegin\n  Write('Your name? ');\n  ReadLn(name);\n  WriteLn('Hello, ', name, '!');\nend.\n",
  nim: 'stdout.write "Your name? "\nstdout.flushFile\nlet name = stdin.readLine\necho "Hello, ", name, "!"\n',
  scheme: '(use-modules (ice-9 rdelim))\n(display "Your name? ")\n(force-output)\n(let ((name (read-line)))\n  (format #t "Hello, ~a!~%" name))\n',
  tcl: 'puts -nonewline "Your name? "\nflush stdout\ngets stdin name\nputs "Hello, $name!"\n',
  awk: 'BEGIN { printf "Your name? "; fflush() }\n{ print "Hello, " $0 "!"; exit }\n',
  assembly:
    'global _start\nsection .data\nmsg:    db "Hello, hearth!", 10\nlen:    equ $ - msg\nsection .text\n_start:\n        mov     eax, 1          ; write(1, msg, len)\n        mov     edi, 1\n        lea     rsi, [rel msg]\n        mov     edx, len\n        syscall\n        mov     eax, 60         ; exit(0)\n        xor     edi, edi\n        syscall\n',
  lisp: '(format t "Your name? ")\n(finish-output)\n(let ((name (read-line)))\n  (format t "Hello, ~A!~%" name))\n',
  erlang:
    '#!/usr/bin/env escript\nmain(_) ->\n    Name = string:trim(io:get_line("Your name? ")),\n    io:format("Hello, ~s!~n", [Name]).\n',
  elixir: 'name = IO.gets("Your name? ") |> String.trim()\nIO.puts("Hello, #{name}!")\n',
  prolog:
    ':- initialization(main, main).\nmain :-\n    write(\'Your name? \'), flush_output,\n    read_line_to_string(user_input, Name),\n    format("Hello, ~w!~n", [Name]).\n',
  cobol:
    "IDENTIFICATION DIVISION.\nPROGRAM-ID. MAIN.\nDATA DIVISION.\nWORKING-STORAGE SECTION.\n01 NAME-IN PIC X(40).\nPROCEDURE DIVISION.\n    DISPLAY \"Your name? \" WITH NO ADVANCING\n    ACCEPT NAME-IN\n    DISPLAY \"Hello, \" FUNCTION TRIM(NAME-IN) \"!\"\n    STOP RUN.\n",
};
