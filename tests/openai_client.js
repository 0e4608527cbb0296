// The official `openai` npm client against bitllm serve: a chat completion, plain and streamed
// (the streamed deltas must add up to the plain answer), two samples streamed, a text completion,
// a prompt scored with echo and logprobs, chat logprobs, the model list and the model retrieved by
// id, and the client's own error type for a bad request. Prints one JSON object with what it saw.
// usage: node openai_client.js NODE_MODULES_DIR PORT API_KEY
const path = require('path');
const mod = require(path.join(process.argv[2], 'openai'));
const OpenAI = mod.OpenAI || mod.default || mod;

async function main() {
  const client = new OpenAI({baseURL: `http://127.0.0.1:${process.argv[3]}/v1`,
                             apiKey: process.argv[4], maxRetries: 0, timeout: 120000});
  const messages = [{role: 'system', content: 'You tell stories.'},
                    {role: 'user', content: 'Tell me about a cat.'}];
  const out = {};
  const models = await client.models.list();
  out.models = models.data.map((m) => m.id);
  out.retrieved = (await client.models.retrieve(out.models[0])).id;
  const r = await client.chat.completions.create(
      {model: out.models[0], messages, max_tokens: 24, temperature: 0});
  out.chat = r.choices[0].message.content;
  out.chat_finish = r.choices[0].finish_reason;
  out.chat_usage = r.usage;
  const stream = await client.chat.completions.create(
      {model: out.models[0], messages, max_tokens: 24, temperature: 0, stream: true,
       stream_options: {include_usage: true}});
  let text = '', finish = null, usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    if (!chunk.choices.length) continue;
    text += chunk.choices[0].delta.content || '';
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  out.stream = text;
  out.stream_finish = finish;
  out.stream_usage = usage;
  // two samples streamed: the client's chunks put together by index are the plain answer's
  const two = {model: out.models[0], messages, max_tokens: 12, temperature: 1, seed: 3, n: 2};
  out.n2 = (await client.chat.completions.create(two)).choices.map((ch) => ch.message.content);
  out.n2_stream = ['', ''];
  for await (const chunk of await client.chat.completions.create({...two, stream: true}))
    for (const ch of chunk.choices) out.n2_stream[ch.index] += ch.delta.content || '';
  const c = await client.completions.create(
      {model: out.models[0], prompt: 'Once upon a time', max_tokens: 12, temperature: 0});
  out.completion = c.choices[0].text;
  // the shape lm-evaluation-harness's local-completions sends to score a continuation
  const s = await client.completions.create(
      {model: out.models[0], prompt: 'Once upon a time', max_tokens: 1, temperature: 0,
       logprobs: 1, echo: true});
  out.scored = s.choices[0].logprobs;
  out.scored_text = s.choices[0].text;
  const l = await client.chat.completions.create(
      {model: out.models[0], messages, max_tokens: 4, temperature: 0, logprobs: true,
       top_logprobs: 2});
  out.chat_logprobs = l.choices[0].logprobs;
  try {
    await client.chat.completions.create({model: 'x', messages, temperature: 7});
    out.bad_request = 'accepted';
  } catch (e) {
    out.bad_request = `${e.constructor.name} ${e.status} ${e.param || (e.error && e.error.param)}`;
  }
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(`openai client failed: ${e.stack || e}`);
  process.exit(1);
});
