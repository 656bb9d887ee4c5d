// Builds the console (console/src) into console/dist, which the control plane
// serves at / (src/api/routes/console.ts). `npm install` runs it (package.json
// "prepare"); `npm run dev:console` serves it with the API proxied to a herd up.
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({
  root: import.meta.dirname,
  base: "/",
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // The budget is checked by scripts/console-size.ts (first load ≤ 300 KB gzip).
    chunkSizeWarningLimit: 600,
  },
  server: {
    proxy: { "/api": process.env.HERD_SERVER ?? "http://127.0.0.1:7070" },
  },
});
