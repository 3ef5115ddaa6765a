// The code editor: CodeMirror 6 with its basic set-up, Tab to indent (Escape, then Tab,
// leaves the editor: CodeMirror's own way out of the tab trap), the language's grammar and
// a light or dark theme following the system's.

import { basicSetup } from "codemirror";
import { EditorView, keymap } from "@codemirror/view";
import { Compartment, EditorState, Prec } from "@codemirror/state";
import { indentWithTab } from "@codemirror/commands";
import { indentUnit } from "@codemirror/language";
import { oneDark } from "@codemirror/theme-one-dark";
import { languageSupport } from "./languages";

export interface EditorOptions {
  parent: HTMLElement;
  doc: string;
  label: string;
  onRun(): void;
  onStop(): void;
  onChange(doc: string): void;
}

export class Editor {
  readonly view: EditorView;
  private language = new Compartment();
  private theme = new Compartment();
  private wanted = "";
  /** The language whose grammar is in force (its id), once loaded. */
  applied = "";

  constructor(o: EditorOptions) {
    const dark = window.matchMedia("(prefers-color-scheme: dark)");
    this.view = new EditorView({
      parent: o.parent,
      state: EditorState.create({
        doc: o.doc,
        extensions: [
          Prec.highest(
            keymap.of([
              { key: "Mod-Enter", run: () => (o.onRun(), true) },
              { key: "Mod-Shift-Enter", run: () => (o.onStop(), true) },
            ]),
          ),
          basicSetup,
          keymap.of([indentWithTab]),
          indentUnit.of("    "),
          this.language.of([]),
          this.theme.of(dark.matches ? oneDark : []),
          EditorView.contentAttributes.of({ "aria-label": o.label }),
          EditorView.updateListener.of((u) => {
            if (u.docChanged) o.onChange(u.state.doc.toString());
          }),
        ],
      }),
    });
    dark.addEventListener("change", (m) => this.view.dispatch({ effects: this.theme.reconfigure(m.matches ? oneDark : []) }));
  }

  get doc(): string {
    return this.view.state.doc.toString();
  }

  /** Replaces the whole text (a language's draft or sample). */
  setDoc(text: string): void {
    this.view.dispatch({ changes: { from: 0, to: this.view.state.doc.length, insert: text } });
  }

  /** Loads and applies the grammar of `lang` (the last asked for wins). */
  async setLanguage(lang: string): Promise<void> {
    this.wanted = lang;
    let ext;
    try {
      ext = await languageSupport(lang);
    } catch {
      ext = [];
    }
    if (this.wanted === lang) {
      this.view.dispatch({ effects: this.language.reconfigure(ext) });
      this.applied = lang;
    }
  }

  focus(): void {
    this.view.focus();
  }
}
