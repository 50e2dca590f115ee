// mediasoup-client, loaded apart from the rest of the page (build.mjs splits it
// out): it is most of the page's script. index.html preloads it; call.js
// imports it once its join is sent, so it is evaluated while the server joins
// (evaluated earlier, it held up the socket's connect on the page's one thread).
export { Device } from 'mediasoup-client';
