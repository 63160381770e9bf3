// Remember the reader's language choice so the root page can send them straight there.
document.addEventListener("click", (event) => {
  const link = event.target.closest("a.pb-lang-switch, a.pb-lang-choice");
  if (link) {
    try { localStorage.setItem("phasebook-lang", link.dataset.pbLang); } catch (e) { /* private mode */ }
  }
});
