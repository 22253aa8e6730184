// Package docs holds Corral's documentation (the Markdown files next to
// this one). It has no code: its tests keep the documents true, checking
// their examples and the facts they state against the code.
package docs
