#!/usr/bin/env python3
"""Checks that the slide deck agrees with the workspace (slides/check runs it).

- Every step folder (NN-name at the root) is a member of the root Cargo.toml,
  in order, and its package is stepNN-name.
- The deck has the four opening sections, then one section per step folder,
  in the same order. A section starts at a level-1 heading; a step's is
  "# NN-name: Title".
- Each step's section shows its diagram (diagrams/NN-name.svg), the command
  that runs it (cargo run -p stepNN-name), at least one curl line and, from
  the second step on, the diff with the step before
  (git diff --no-index <step before> <this step>).
- Every command the deck shows is copied from a README: the step's own for a
  step's section, the root README for the opening sections. Every cargo -p
  names a package of the workspace; every git diff --no-index names two
  folders that exist.
- Every link, image and path the deck shows exists, and every diagram in
  diagrams/ is used.
- Every line of code fits, unwrapped, in the code box of its slide, at the
  code font of the slide's class (see THEME_SLIDE_WIDTH); a command too long
  for that is not shown as an inline code span, which would wrap with the
  text and break its box, but in a ```sh block on a slide whose class makes
  the code small enough.
"""

import argparse
import os
import re
import shlex
import sys
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

INTRO = [
    "Microservices workshop",
    "Develop Microservice",
    "Properties of Microservice",
    "Workshop: Microservices with Rust",
]
STEP_DIR = re.compile(r"\d\d-[a-z][a-z0-9-]*")
STEP_HEADING = re.compile(r"(\d\d-[a-z][a-z0-9-]*): \S.*")
# An inline code span is a command when it starts like one.
COMMAND = re.compile(r"(?:[A-Z][A-Z0-9_]*=\S+ )*(?:cargo|curl|git|docker|prometheus|kill) ")
SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
# A relative path as the deck writes one: no scheme, no leading slash.
PATH = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*/?")
FILE_EXTENSIONS = (".rs", ".toml", ".md", ".yml", ".yaml", ".dot", ".svg")
TOKEN_SEPARATORS = re.compile(r"[\s=(),'\"`;<>\[\]{}|]+")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")

# How wide a line of code may be, in characters. Marp's default theme (the
# deck's) lays a slide out 1280 px wide for size 16:9 (960 for 4:3), with a
# padding of 78.5 px on each side; a code block (pre) has a padding of 16 px
# and a border of 1 px on each side, which leaves 1280 - 157 - 32 - 2 =
# 1089 px for the code. Its font is 85 % of the slide's unless the deck's
# style sets another for the slide's class (section.wide pre { font-size:
# 14px; }). The theme's monospace fonts (ui-monospace, SF Mono, Menlo,
# Consolas, Liberation Mono, then the system's monospace, DejaVu Sans Mono on
# Linux) are all 0.55 to 0.602 em a character; 0.61 em leaves a little room
# for rounding. So a slide of 26 px takes 80 characters a line, one of 22 px
# (small) 95, and a code font of 14 px 127.
THEME_SLIDE_WIDTH = {"16:9": 1280, "4:3": 960}
THEME_SLIDE_PADDING = 78.5
THEME_CODE_PADDING = 16 + 1  # padding and border, each side
THEME_SLIDE_FONT = 29  # px, the default theme's, when the style sets none
THEME_CODE_FONT = 0.85  # of the slide's
CHARACTER_WIDTH = 0.61  # em
CSS_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")
CSS_FONT_SIZE = re.compile(r"font-size\s*:\s*([0-9.]+)(px|em|%)\s*(?:;|$)")


@dataclass
class Section:
    title: str
    line: int
    step: str | None = None  # the step folder, for a step's section
    blocks: list = field(default_factory=list)  # (language, line, text)
    inline: list = field(default_factory=list)  # (line, code)
    links: list = field(default_factory=list)  # (line, target)


def display_width(text: str) -> int:
    """How many character cells a line of code takes in a monospace font."""
    text = text.expandtabs(8)
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


class Check:
    def __init__(self, root: Path, deck: Path):
        self.root = root
        self.slides = root / "slides"
        self.deck = deck
        self.deck_name = "slides/deck.md" if deck == self.slides / "deck.md" else str(deck)
        self.errors: list[str] = []

    def fail(self, message: str, line: int | None = None):
        where = f"{self.deck_name}:{line}: " if line else ""
        self.errors.append(where + message)

    # --- the workspace -------------------------------------------------

    def workspace(self):
        self.step_dirs = sorted(
            d.name for d in self.root.iterdir() if d.is_dir() and STEP_DIR.fullmatch(d.name)
        )
        for number, name in enumerate(self.step_dirs, start=1):
            if name[:2] != f"{number:02d}":
                self.fail(
                    f"the step folders are not numbered 01, 02, ... without gaps: {name}/ is "
                    f"step number {number}; rename it to {number:02d}{name[2:]}/"
                )
                break
        with open(self.root / "Cargo.toml", "rb") as f:
            members = tomllib.load(f)["workspace"]["members"]
        step_members = [m for m in members if STEP_DIR.fullmatch(m)]
        for name in self.step_dirs:
            if name not in members:
                self.fail(
                    f'{name}/ is not a workspace member: add "{name}" to the members of '
                    f"Cargo.toml, in the order of the steps"
                )
        for member in step_members:
            if member not in self.step_dirs:
                self.fail(f"Cargo.toml has the member {member}, but there is no folder {member}/")
        listed = [m for m in step_members if m in self.step_dirs]
        if listed != [d for d in self.step_dirs if d in listed]:
            self.fail(
                "the steps in the members of Cargo.toml are not in the order of their folders: "
                f"{', '.join(listed)}; list them as {', '.join(d for d in self.step_dirs if d in listed)}"
            )
        self.packages = {}
        for member in members:
            manifest = self.root / member / "Cargo.toml"
            if manifest.is_file():
                with open(manifest, "rb") as f:
                    name = tomllib.load(f).get("package", {}).get("name")
                if name:
                    self.packages[member] = name
        for name in self.step_dirs:
            expected = f"step{name}"
            manifest = self.root / name / "Cargo.toml"
            if not manifest.is_file():
                self.fail(f"{name}/ has no Cargo.toml: a step is a package, {expected}")
                continue
            with open(manifest, "rb") as f:
                package = tomllib.load(f).get("package", {}).get("name")
            if package != expected:
                self.fail(
                    f"{name}/Cargo.toml names its package {package}; a step's package is step "
                    f"and its folder's name: {expected} (CONTRIBUTING.md)"
                )

    # --- the deck ------------------------------------------------------

    def parse(self):
        lines = self.deck.read_text(encoding="utf-8").split("\n")
        start = 0
        self.front_matter: list[str] = []
        if lines and lines[0].strip() == "---":
            ends = [i for i in range(1, len(lines)) if lines[i].strip() == "---"]
            if not ends:
                self.fail("the front matter (from the first ---) never ends", 1)
                ends = [0]
            start = ends[0] + 1
            self.front_matter = lines[1 : ends[0]]
            if not any(re.fullmatch(r"marp:\s*true", l.strip()) for l in lines[1 : ends[0]]):
                self.fail("the front matter does not say marp: true; Marp would not render the slides", 1)
        self.sections: list[Section] = []
        # The slides: for each, the class its _class directive gives it, and
        # the class directive (for it and the slides after it) it holds.
        self.slide_of: dict[int, int] = {}  # line number: slide
        local_class: list[str | None] = [None]
        global_class: list[str | None] = [None]
        fence = None
        for index in range(start, len(lines)):
            number, text = index + 1, lines[index]
            if fence is None and text.strip() == "---":
                local_class.append(None)
                global_class.append(None)
                continue
            self.slide_of[number] = len(local_class) - 1
            directive = re.fullmatch(r"\s*<!--\s*(_?)class\s*:\s*(.*?)\s*-->\s*", text)
            if fence is None and directive:
                (local_class if directive.group(1) else global_class)[-1] = directive.group(2)
            if fence is not None:
                if text.strip().startswith(fence[0]):
                    language, first, body = fence[1], fence[2], fence[3]
                    if self.sections:
                        self.sections[-1].blocks.append((language, first, body))
                    fence = None
                else:
                    fence[3].append((number, text))
                continue
            opening = re.match(r"\s*(```+|~~~+)\s*([\w-]*)", text)
            if opening:
                fence = (opening.group(1), opening.group(2).lower(), number, [])
                continue
            heading = re.match(r"# (.+?)\s*$", text)
            if heading:
                section = Section(heading.group(1), number)
                step = STEP_HEADING.fullmatch(section.title)
                section.step = step.group(1) if step else None
                self.sections.append(section)
                continue
            if not self.sections:
                if text.strip() and not text.strip().startswith("<!--") and text.strip() != "---":
                    self.fail("content before the first section's heading", number)
                continue
            section = self.sections[-1]
            for match in INLINE_CODE.finditer(text):
                section.inline.append((number, match.group(2).strip()))
            for match in LINK.finditer(INLINE_CODE.sub("", text)):
                section.links.append((number, match.group(1)))
        if fence is not None:
            self.fail("a code block is never closed", fence[2])
        self.slide_classes: list[list[str]] = []
        in_effect = next(
            (m.group(1) for m in (re.fullmatch(r"class:\s*(.*?)\s*", l) for l in self.front_matter) if m),
            None,
        )
        for local, declared in zip(local_class, global_class):
            if declared is not None:
                in_effect = declared
            chosen = local if local is not None else in_effect
            self.slide_classes.append((chosen or "").split())

    def sections_in_order(self):
        intro = []
        steps = []
        for section in self.sections:
            if section.step is None:
                if steps:
                    self.fail(
                        f'the section "{section.title}" comes after the steps; the opening '
                        f"sections come first: {'; '.join(INTRO)}",
                        section.line,
                    )
                intro.append(section)
            else:
                steps.append(section)
        titles = [s.title for s in intro]
        if titles != INTRO:
            self.fail(
                "the opening sections (level-1 headings before the steps) are "
                f"{titles or 'missing'}; they must be, in this order: {INTRO}"
            )
        deck_steps = [s.step for s in steps]
        for section in steps:
            if section.step not in self.step_dirs:
                self.fail(
                    f'the section "# {section.title}" names no step folder: there is no '
                    f"{section.step}/ (rename the heading, or remove the section)",
                    section.line,
                )
        for name in sorted(set(deck_steps)):
            if deck_steps.count(name) > 1:
                self.fail(f"{name} has {deck_steps.count(name)} sections; a step has one")
        for position, name in enumerate(self.step_dirs):
            if name not in deck_steps:
                before = self.step_dirs[position - 1] if position else None
                where = f"after the section of {before}" if before else "before the other steps"
                self.fail(
                    f'{name}/ has no section in the deck: add a slide "# {name}: <title>", {where}, '
                    "with its diagram, run command, curl lines and diff"
                )
        common = [n for n in deck_steps if n in self.step_dirs]
        if common != [n for n in self.step_dirs if n in common]:
            self.fail(
                f"the step sections are in the order {', '.join(common)}; the folders are "
                f"{', '.join(n for n in self.step_dirs if n in common)}: move the sections"
            )

    # --- each step's section -------------------------------------------

    def commands(self, section: Section):
        """The commands a section shows: shell blocks' lines, and inline code that is one."""
        for language, _, body in section.blocks:
            if language in SHELL_LANGUAGES:
                for number, text in body:
                    if text.strip() and not text.strip().startswith("#"):
                        yield number, text.strip()
        for number, code in section.inline:
            if COMMAND.match(code):
                yield number, code

    def step_sections(self):
        for section in self.sections:
            name = section.step
            if name not in self.step_dirs:
                continue
            position = self.step_dirs.index(name)
            package = self.packages.get(name, f"step{name}")
            diagram = f"diagrams/{name}.svg"
            if diagram not in [target for _, target in section.links]:
                self.fail(
                    f"the section of {name} shows no diagram of its services: add "
                    f"![<what it shows>]({diagram}), made from slides/diagrams/{name}.dot",
                    section.line,
                )
            if not (self.slides / "diagrams" / f"{name}.dot").is_file():
                self.fail(f"slides/diagrams/{name}.dot, the source of {name}'s diagram, is missing")
            commands = list(self.commands(section))
            run = re.compile(rf"(?:[A-Z][A-Z0-9_]*=\S+ )*cargo run -p {re.escape(package)}")
            if not any(run.fullmatch(c) for _, c in commands):
                self.fail(
                    f"the section of {name} does not show the command that runs the step: "
                    f"cargo run -p {package}, in a ```sh block",
                    section.line,
                )
            if not any(c.startswith("curl ") for _, c in commands):
                self.fail(
                    f"the section of {name} shows no curl line: copy one or two from the "
                    f'"Try it" of {name}/README.md',
                    section.line,
                )
            diffs = [(n, c) for n, c in commands if c.startswith("git diff")]
            if position > 0:
                previous = self.step_dirs[position - 1]
                expected = f"git diff --no-index {previous} {name}"
                if not diffs:
                    self.fail(f"the section of {name} does not show its diff: {expected}", section.line)
                for number, command in diffs:
                    folders = [t for t in shlex.split(command)[2:] if not t.startswith("-")]
                    if folders != [previous, name]:
                        self.fail(
                            f"`{command}` is not the diff of {name} with the step before it: {expected}",
                            number,
                        )

    # --- commands, paths and links ---------------------------------------

    def readme_commands(self, readme: Path) -> set[str]:
        text = readme.read_text(encoding="utf-8")
        found = {line.strip() for line in text.split("\n") if line.strip()}
        found |= {m.group(2).strip() for m in INLINE_CODE.finditer(text)}
        return found

    def commands_exist(self):
        packages = set(self.packages.values())
        for section in self.sections:
            if section.step is None:
                readme = self.root / "README.md"
            elif section.step in self.step_dirs:
                readme = self.root / section.step / "README.md"
            else:
                continue
            copied = self.readme_commands(readme) if readme.is_file() else set()
            readme_name = readme.relative_to(self.root)
            for number, command in self.commands(section):
                if command not in copied:
                    self.fail(
                        f"`{command}` is not in {readme_name}: the deck shows the README's commands "
                        "as they are; copy it from there (or change the README first)",
                        number,
                    )
                try:
                    words = shlex.split(command)
                except ValueError as error:
                    self.fail(f"`{command}` is not a well-formed command: {error}", number)
                    continue
                while words and re.fullmatch(r"[A-Z][A-Z0-9_]*=\S*", words[0]):
                    words = words[1:]
                if words[:1] == ["cargo"]:
                    for flag, value in zip(words, words[1:]):
                        if flag in ("-p", "--package") and not value.startswith("<"):
                            if value not in packages:
                                self.fail(
                                    f"`{command}` names the package {value}, which is no member of "
                                    f"the workspace; the packages are {', '.join(sorted(packages))}",
                                    number,
                                )
                if words[:3] == ["git", "diff", "--no-index"]:
                    folders = [w for w in words[3:] if not w.startswith("-")]
                    if len(folders) != 2:
                        self.fail(f"`{command}` should name two folders", number)
                    for folder in folders:
                        if not (self.root / folder).is_dir():
                            self.fail(f"`{command}` names {folder}, which is no folder of the workspace", number)

    def paths_exist(self):
        for section in self.sections:
            base = self.root / section.step if section.step in self.step_dirs else self.root
            for number, target in section.links:
                if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                    continue
                path = target.split("#")[0]
                if path and not (self.slides / path).exists():
                    shown = os.path.normpath(os.path.join("slides", path))
                    self.fail(
                        f"the link or image {target} leads nowhere: there is no {shown} "
                        "(links are relative to slides/)",
                        number,
                    )
            code = [(n, c) for n, c in section.inline]
            code += [(n, t) for _, _, body in section.blocks for n, t in body]
            for number, text in code:
                for token in TOKEN_SEPARATORS.split(text):
                    token = token.rstrip(".,:;")
                    if not token or token.startswith(("/", ".", "-")):
                        continue
                    if STEP_DIR.fullmatch(token.rstrip("/")):
                        if not (self.root / token).is_dir():
                            self.fail(f"`{token}` is no step folder of the workspace", number)
                        continue
                    if not PATH.fullmatch(token):
                        continue
                    if "/" in token:
                        first = token.split("/")[0]
                        if STEP_DIR.fullmatch(first):
                            where = self.root
                        elif (base / first).exists():
                            where = base
                        elif (self.root / first).exists():
                            where = self.root
                        else:
                            continue  # not a path: application/xml, service2/...
                        if not (where / token).exists():
                            shown = (where / token).relative_to(self.root)
                            self.fail(f"the path `{token}` does not exist (looked for {shown})", number)
                    elif token.endswith(FILE_EXTENSIONS):
                        found = [
                            p
                            for p in base.rglob(token)
                            if "target" not in p.relative_to(self.root).parts
                        ]
                        if not found:
                            shown = base.relative_to(self.root) if base != self.root else "the workspace"
                            self.fail(f"there is no file `{token}` in {shown}", number)

    # --- what fits on a slide --------------------------------------------

    def code_fonts(self):
        """The slide's and the code's font size, in px, by class (None: no class)."""
        values = {}
        for line in self.front_matter:
            key = re.fullmatch(r"(\w+):\s*(.*?)\s*", line)
            if key:
                values[key.group(1)] = key.group(2)
        theme, size = values.get("theme", "default"), values.get("size", "16:9")
        if theme != "default" or size not in THEME_SLIDE_WIDTH:
            self.fail(
                f"the deck's theme is {theme}, size {size}: the check measures code lines for Marp's "
                f"default theme, size {' or '.join(THEME_SLIDE_WIDTH)}; change the THEME_ numbers "
                "numbers in slides/check.py for another"
            )
            return None
        style, in_style = [], False
        for line in self.front_matter:
            if re.fullmatch(r"style:\s*\|[-+]?\s*", line):
                in_style = True
            elif in_style and (line.startswith((" ", "\t")) or not line.strip()):
                style.append(line)
            else:
                in_style = False
        slide_font = {None: float(THEME_SLIDE_FONT)}
        code_font = {}
        for selectors, body in CSS_RULE.findall("\n".join(style)):
            for selector in (s.strip() for s in selectors.split(",")):
                rule = re.fullmatch(r"section(?:\.([\w-]+))?(\s+pre)?", selector)
                if not rule:
                    continue
                if "padding" in body or "width" in body:
                    self.fail(
                        f"the deck's style changes the padding or width of `{selector}`: the check "
                        "measures code lines with the default theme's (the THEME_ numbers in "
                        "slides/check.py); change it there too"
                    )
                font = CSS_FONT_SIZE.search(body)
                if font:
                    name = rule.group(1)
                    target = code_font if rule.group(2) else slide_font
                    target[name] = (float(font.group(1)), font.group(2))
        for name, value in list(slide_font.items()):
            if isinstance(value, tuple):
                number, unit = value
                base = THEME_SLIDE_FONT
                slide_font[name] = number if unit == "px" else number * base * (0.01 if unit == "%" else 1)
        self.slide_width = THEME_SLIDE_WIDTH[size]
        return slide_font, code_font

    def code_limit(self, classes: list[str], fonts) -> tuple[int, float]:
        """How many characters a line of code may have on a slide of these classes."""
        slide_font, code_font = fonts
        slide = max([slide_font[c] for c in classes if c in slide_font] or [slide_font[None]])
        sizes = []
        for name in [None, *classes]:
            if name in code_font:
                number, unit = code_font[name]
                sizes.append(number if unit == "px" else number * slide * (0.01 if unit == "%" else 1))
        code = max(sizes) if sizes else slide * THEME_CODE_FONT
        width = self.slide_width - 2 * THEME_SLIDE_PADDING - 2 * THEME_CODE_PADDING
        return int(width / (code * CHARACTER_WIDTH)), code

    def code_fits(self):
        fonts = self.code_fonts()
        if fonts is None:
            return
        # The classes that make code smaller, to suggest.
        limits = {None: self.code_limit([], fonts)[0]}
        for name in sorted({*fonts[0], *fonts[1]} - {None}):
            limits[name] = self.code_limit([name], fonts)[0]
        def classes_for(width: int) -> str:
            fitting = sorted(((limit, name) for name, limit in limits.items() if name and limit >= width), reverse=True)
            if fitting:
                return "give the slide a class that fits it, <!-- _class: NAME --> (characters a line): " + ", ".join(
                    f"{n} ({l})" for l, n in fitting
                )
            width_px = self.slide_width - 2 * THEME_SLIDE_PADDING - 2 * THEME_CODE_PADDING
            largest = int(width_px / (width * CHARACTER_WIDTH) * 10) / 10
            return (
                "no class of the deck's style makes code that small: add one to its style, "
                f"section.NAME pre {{ font-size: {largest:g}px; }} at most"
            )
        for section in self.sections:
            lines = [(n, t) for _, _, body in section.blocks for n, t in body]
            for number, text in lines:
                width = display_width(text.rstrip())
                classes = self.slide_classes[self.slide_of.get(number, 0)]
                limit, code = self.code_limit(classes, fonts)
                if width > limit:
                    named = f"class {' '.join(classes)}" if classes else "no class"
                    self.fail(
                        f"a line of code of {width} characters: its slide ({named}, code at {code:g} px) "
                        f"fits {limit} on a line, and Marp would shrink or cut it: {classes_for(width)}; "
                        "or shorten the line, if it is no command copied from a README",
                        number,
                    )
            for number, code_text in section.inline:
                if not COMMAND.match(code_text):
                    continue
                classes = self.slide_classes[self.slide_of.get(number, 0)]
                limit, _ = self.code_limit(classes, fonts)
                width = display_width(code_text)
                if width > limit:
                    self.fail(
                        f"`{code_text[:40]}...` is a command of {width} characters in a code span, "
                        f"which wraps with the text over several lines and breaks its box: show it "
                        f"in a ```sh block of its own ({limit} characters a line on this slide): "
                        f"{classes_for(width)}",
                        number,
                    )

    def diagrams_used(self):
        shown = {t for s in self.sections for _, t in s.links}
        for svg in sorted((self.slides / "diagrams").glob("*.svg")):
            if f"diagrams/{svg.name}" not in shown:
                self.fail(
                    f"slides/diagrams/{svg.name} is not shown by the deck: show it, or remove it and its .dot"
                )

    def run(self) -> int:
        self.workspace()
        self.parse()
        self.sections_in_order()
        self.step_sections()
        self.commands_exist()
        self.paths_exist()
        self.code_fits()
        self.diagrams_used()
        if self.errors:
            for error in self.errors:
                print(f"FAIL {error}", file=sys.stderr)
            return 1
        steps = sum(1 for s in self.sections if s.step)
        print(
            f"ok   {self.deck_name}: {len(INTRO)} opening sections, then {steps} step sections in the "
            f"order of the {len(self.step_dirs)} step folders and of Cargo.toml's members; "
            "every command, path and image exists; every line of code fits its slide"
        )
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("deck", nargs="?", help="a copy of the deck to check instead of slides/deck.md")
    parser.add_argument("--root", default=Path(__file__).resolve().parent.parent, type=Path)
    arguments = parser.parse_args()
    root = arguments.root.resolve()
    deck = Path(arguments.deck).resolve() if arguments.deck else root / "slides" / "deck.md"
    return Check(root, deck).run()


if __name__ == "__main__":
    sys.exit(main())
