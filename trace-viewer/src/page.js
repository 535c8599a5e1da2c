// New traces without a reload: every 2 s the page asks the viewer for its
// live part, which comes back 204 (No Content) while nothing changed. What
// the reader opened stays open, and what they read stays where it was.
"use strict";
let jumped = false;

// /#<trace id> goes to that trace, even if it arrives after the page.
function jump() {
  const id = decodeURIComponent(location.hash.slice(1));
  const trace = id && document.getElementById(id);
  if (trace && !jumped) {
    trace.scrollIntoView();
    jumped = true;
  }
}

async function refresh() {
  const live = document.getElementById("live");
  try {
    const answer = await fetch("live?since=" + live.dataset.version, { cache: "no-store" });
    if (answer.status === 200) {
      const page = document.createElement("template");
      page.innerHTML = await answer.text();
      const fresh = page.content.getElementById("live");
      for (const open of live.querySelectorAll("details[open]")) {
        fresh.querySelector("#" + CSS.escape(open.id))?.setAttribute("open", "");
      }
      const read = [...live.querySelectorAll(".trace")].find((t) => t.getBoundingClientRect().bottom > 0);
      const was = read?.getBoundingClientRect().top;
      live.replaceWith(fresh);
      const again = read && window.scrollY > 0 && document.getElementById(read.id);
      if (again) window.scrollBy(0, again.getBoundingClientRect().top - was);
      jump();
    }
    document.body.classList.remove("offline");
  } catch {
    document.body.classList.add("offline");
  }
  setTimeout(refresh, 2000);
}

jump();
setTimeout(refresh, 2000);
