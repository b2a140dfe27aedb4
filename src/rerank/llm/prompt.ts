import { docText, type Doc } from '../../core/types.js';
import { defuseIds, idLabel, type IdStyle } from './parse.js';

/**
 * Bump when any template below changes: it is part of every LLM cache key, so answers to an
 * old prompt are never served for a new one.
 */
export const PROMPT_VERSION = 1;

/** A prompt as every backend takes it: a system line and one user message. */
export interface Prompt {
  system: string;
  user: string;
}

/** Prompt tokens at 4 characters a token: budgets reserve it, and servers reporting no usage are billed by it. */
export function estimateTokens(prompt: Prompt): number {
  return Math.ceil((prompt.system.length + prompt.user.length) / 4);
}

/** The first `maxWords` words of a document (title included), with id-like brackets defused. */
export function passage(doc: Doc, maxWords: number): string {
  const words = docText(doc).split(/\s+/).filter(Boolean);
  const cut = words.length > maxWords ? `${words.slice(0, maxWords).join(' ')} …` : words.join(' ');
  return defuseIds(cut);
}

/** True when `passage` cut the document. */
export function truncated(doc: Doc, maxWords: number): boolean {
  return docText(doc).split(/\s+/).filter(Boolean).length > maxWords;
}

function instructionLine(instruction: string | undefined): string {
  return instruction ? `\nFollow these rules when judging relevance: ${defuseIds(instruction)}\n` : '';
}

/** RankGPT's listwise prompt (Sun et al., 2023), with the instruction added when given. */
export function listwisePrompt(query: string, docs: readonly Doc[], maxWords: number, style: IdStyle, instruction?: string): Prompt {
  const q = defuseIds(query);
  const n = docs.length;
  const lines = docs.map((d, i) => `[${idLabel(i, style)}] ${passage(d, maxWords)}`).join('\n');
  const example = style === 'number' ? '[2] > [1]' : '[B] > [A]';
  return {
    system: 'You are RankGPT, an intelligent assistant that can rank passages based on their relevancy to the query.',
    user:
      `I will provide you with ${n} passages, each indicated by an identifier in brackets. Rank the passages based on their relevance to the search query: ${q}.\n` +
      instructionLine(instruction) +
      `\n${lines}\n\nSearch Query: ${q}.\n` +
      `Rank the ${n} passages above based on their relevance to the search query. All the passages should be included and listed using identifiers, in descending order of relevance. ` +
      `The output format should be [] > [], e.g., ${example}. Only respond with the ranking results, do not say any word or explain.`,
  };
}

/** Pointwise yes/no relevance (the answer's first token carries P(yes)). */
export function yesNoPrompt(query: string, doc: Doc, maxWords: number, instruction?: string): Prompt {
  return {
    system: 'You judge whether a passage answers a search query.',
    user: `Query: ${defuseIds(query)}\nPassage: ${passage(doc, maxWords)}\n${instructionLine(instruction)}Is the passage relevant to the query? Answer with Yes or No only.\nAnswer:`,
  };
}

/** Pointwise graded relevance on a 0-3 rubric (TREC-style). */
export function gradedPrompt(query: string, doc: Doc, maxWords: number, instruction?: string): Prompt {
  return {
    system: 'You grade how well a passage answers a search query.',
    user:
      `Query: ${defuseIds(query)}\nPassage: ${passage(doc, maxWords)}\n${instructionLine(instruction)}` +
      'Grade the passage: 3 = perfectly relevant, answers the query fully; 2 = highly relevant, answers it partly; ' +
      '1 = related to the topic but does not answer it; 0 = irrelevant. Answer with one digit only.\nGrade:',
  };
}

/** Setwise: pick the most relevant of a labelled set (Zhuang et al., 2024). */
export function setwisePrompt(query: string, docs: readonly Doc[], maxWords: number, instruction?: string): Prompt {
  const q = defuseIds(query);
  const lines = docs.map((d, i) => `[${idLabel(i, 'letter')}] ${passage(d, maxWords)}`).join('\n');
  return {
    system: 'You pick the passage that best answers a search query.',
    user: `Query: ${q}\n${instructionLine(instruction)}\n${lines}\n\nWhich passage is the most relevant to the query? Answer with its label only, e.g. [B].\nAnswer:`,
  };
}
