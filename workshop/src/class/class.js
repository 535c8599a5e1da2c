// Follows the board: the class holds each request until the board changes
// (or for a few seconds, so that "3 min ago" stays true), and the page asks
// again a second later. A check shows in a moment, without a reload.
"use strict";

const board = document.getElementById("board");
const connection = document.getElementById("connection");

async function follow() {
  let version = board.dataset.version;
  for (;;) {
    try {
      const response = await fetch("/board?after=" + encodeURIComponent(version), {
        cache: "no-store",
      });
      if (!response.ok) {
        throw new Error("the class answered " + response.status);
      }
      version = response.headers.get("X-Board-Version") || version;
      // The board comes escaped from the class (page.rs).
      board.innerHTML = await response.text();
      connection.hidden = true;
      // At most a board a second: a room checking at once is not a page
      // drawn three hundred times.
      await pause(1000);
    } catch (error) {
      connection.hidden = false;
      await pause(2000);
    }
  }
}

function pause(milliseconds) {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

follow();
