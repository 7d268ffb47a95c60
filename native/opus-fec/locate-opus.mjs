// Prints where @discordjs/opus keeps libopus: `include` (its headers) or `lib` (the static
// library its from-source build leaves behind), for binding.gyp.
import { readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const root = dirname(createRequire(import.meta.url).resolve('@discordjs/opus/package.json'));
if (process.argv[2] === 'include') {
  process.stdout.write(join(root, 'deps', 'opus', 'include'));
} else {
  const found = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name === 'opus.a') found.push(p);
    }
  };
  for (const name of readdirSync(root)) if (name.startsWith('build')) walk(join(root, name));
  if (!found.length) throw new Error(`no opus.a under ${root}: @discordjs/opus must be built from source (.npmrc build-from-source=true)`);
  process.stdout.write(found[0]);
}
