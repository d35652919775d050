import { describe, expect, test } from "vitest";
import { allows, allowsGroupAdd, readStateShared, statusVisible, type Relation } from "./privacy.js";

const contact: Relation = { self: false, viewerIsContact: true, blocked: false };
const stranger: Relation = { self: false, viewerIsContact: false, blocked: false };
const blocked: Relation = { self: false, viewerIsContact: true, blocked: true };
const self: Relation = { self: true, viewerIsContact: false, blocked: false };

describe("allows", () => {
  test.each([
    ["everyone", [true, true, false, true]],
    ["contacts", [true, false, false, true]],
    ["nobody", [false, false, false, true]],
  ] as const)("%s × (contact, stranger, blocked, self)", (setting, expected) => {
    expect([contact, stranger, blocked, self].map((r) => allows(setting, r))).toEqual(expected);
  });
});

describe("allowsGroupAdd", () => {
  test.each([
    ["everyone", [true, true]],
    ["contacts", [true, false]],
    ["nobody", [false, false]],
  ] as const)("%s × (adder in their contacts, adder not)", (setting, expected) => {
    expect([true, false].map((isContact) => allowsGroupAdd(setting, isContact))).toEqual(expected);
  });
});

describe("statusVisible", () => {
  const none = new Set<string>();
  test("audiences within the status setting", () => {
    expect(statusVisible("contacts", { kind: "contacts", userIds: none }, "v", contact)).toBe(true);
    expect(statusVisible("contacts", { kind: "contacts", userIds: none }, "v", stranger)).toBe(false);
    expect(statusVisible("contacts", { kind: "except", userIds: new Set(["v"]) }, "v", contact)).toBe(false);
    expect(statusVisible("contacts", { kind: "except", userIds: new Set(["w"]) }, "v", contact)).toBe(true);
    expect(statusVisible("contacts", { kind: "only", userIds: new Set(["v"]) }, "v", stranger)).toBe(false);
    expect(statusVisible("everyone", { kind: "only", userIds: new Set(["v"]) }, "v", stranger)).toBe(true);
    expect(statusVisible("everyone", { kind: "only", userIds: new Set(["v"]) }, "v", blocked)).toBe(false);
    expect(statusVisible("nobody", { kind: "contacts", userIds: none }, "v", contact)).toBe(false);
    expect(statusVisible("nobody", { kind: "contacts", userIds: none }, "v", self)).toBe(true);
  });
});

describe("readStateShared", () => {
  test("groups always; a direct chat only while both have read receipts on", () => {
    expect(readStateShared(true, [false, false])).toBe(true);
    expect(readStateShared(false, [true, true])).toBe(true);
    expect(readStateShared(false, [true, false])).toBe(false);
    expect(readStateShared(false, [false, true])).toBe(false);
  });
});
