/**
 * Every length limit on text (message content and edits, group name and
 * description, display name, about, status text and captions, device name)
 * counts Unicode code points: an emoji such as 😀 is one, as a person counts
 * it, where JavaScript's `length` (UTF-16 units) says two. Emoji sequences
 * built of several code points (👍🏽, 👨‍👩‍👧) count each of them.
 */
export function codePoints(s: string): number {
  let n = s.length;
  // A surrogate pair (a code point above U+FFFF) is two UTF-16 units and one code point.
  for (let i = 0; i < s.length - 1; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}
